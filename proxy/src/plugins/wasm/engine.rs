//! The one wasmtime [`Engine`] of the process (compiled code and the epoch counter are shared by
//! every filter) and its epoch ticker: one thread that advances the epoch every
//! [`TICK`], so a call's deadline is a number of ticks.

use std::sync::{Once, OnceLock};
use std::time::Duration;

use wasmtime::{Config, Engine};

/// How often the epoch advances: the granularity of call deadlines.
pub const TICK: Duration = Duration::from_millis(1);

/// The shared engine (Cranelift, epoch interruption on).
pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut config = Config::new();
        config.epoch_interruption(true);
        Engine::new(&config).expect("the wasmtime configuration is valid on this host")
    })
}

/// Starts the ticker thread (once per process), called before the first instance runs.
pub fn start_ticker() {
    static TICKER: Once = Once::new();
    TICKER.call_once(|| {
        let engine = engine().clone();
        std::thread::Builder::new()
            .name("hookway-wasm-epoch".into())
            .spawn(move || loop {
                std::thread::sleep(TICK);
                engine.increment_epoch();
            })
            .expect("spawning the wasm epoch thread");
    });
}

/// The number of ticks for a deadline of `millis` (rounded up).
pub fn ticks(millis: u64) -> u64 {
    // One more: the next tick may come at once.
    millis / TICK.as_millis() as u64 + 1
}

/// Checks that `bytes` is a WebAssembly module this engine can compile (no compilation).
pub fn validate(bytes: &[u8]) -> Result<(), String> {
    wasmtime::Module::validate(engine(), bytes)
        .map_err(|e| format!("not a valid WebAssembly module: {e}"))
}
