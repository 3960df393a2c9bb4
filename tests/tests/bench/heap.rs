//! Live heap bytes, counted by a global allocator, and the process figures read from `/proc`
//! (RSS, CPU time) of this process or of the API server's.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

/// Counts live heap bytes, so the controller's and the proxies' shares can be told apart in this
/// one process (RSS alone cannot: the allocator keeps freed pages).
pub struct Counting;

/// Per-thread-ish shards of the live byte count, each on its own cache line, so that counting
/// does not make the two cores fight over one line on every allocation (which would slow down
/// what the benchmark times).
#[repr(align(64))]
struct Shard(AtomicIsize);

const SHARDS: usize = 16;
static LIVE: [Shard; SHARDS] = [const { Shard(AtomicIsize::new(0)) }; SHARDS];

thread_local! {
    static MARK: u8 = const { 0 };
}

/// This thread's shard (by the address of a thread-local: distinct per live thread).
fn shard() -> &'static AtomicIsize {
    let i = MARK
        .try_with(|m| (m as *const u8 as usize >> 6) % SHARDS)
        .unwrap_or(0);
    &LIVE[i].0
}

fn count(delta: isize) {
    shard().fetch_add(delta, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to `System` unchanged; only a counter is updated beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        count(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count(new_size as isize - layout.size() as isize);
        }
        p
    }
}

/// Live heap bytes of this process, in MiB.
pub fn live_mib() -> f64 {
    let live: isize = LIVE.iter().map(|s| s.0.load(Ordering::Relaxed)).sum();
    live as f64 / (1024.0 * 1024.0)
}

/// RSS of process `pid` (`"self"` for this one), MiB; 0 when unreadable.
pub fn rss_mib(pid: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// CPU time (user + system, all threads) of process `pid` so far, seconds; 0 when unreadable.
/// `/proc` counts it in clock ticks, 100 per second on Linux (`getconf CLK_TCK`).
pub fn cpu_seconds(pid: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the command name (which may hold spaces), from field 3 (state) on:
            // utime is field 14, stime field 15.
            let rest = &s[s.rfind(')')? + 1..];
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let ticks =
                fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
            Some(ticks / 100.0)
        })
        .unwrap_or(0.0)
}

/// The 1-, 5- and 15-minute load averages, for the report.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
