//! What a filter's module can do, read from its exports and imports when it is compiled: the
//! chain phases it takes part in, whether it has anything to be told at the end of a request,
//! whether it can read a request or response head after that head's own callback, whether a
//! hook may have to wait for its `proxy_http_call`s, and whether it needs a root task (ticks,
//! shared queues).
//!
//! A phase the module cannot act in costs every request through the chain (a body filter
//! probed, the response body tracked to its end for a completion hook), and a head copy kept
//! for calls that cannot read it is an allocation and a drop per request; so hookway declares
//! and keeps only what the module's own interface asks for.

use wasmtime::{ExternType, Module};

use crate::plugin::Phases;

/// Imports that read a request or response head (header maps or properties).
const HEAD_READERS: [&str; 4] = [
    "proxy_get_header_map_value",
    "proxy_get_header_map_pairs",
    "proxy_get_header_map_size",
    "proxy_get_property",
];

/// What a module exports and imports, as far as the chain cares.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Exports `proxy_on_request_body`.
    pub request_body: bool,
    /// Exports `proxy_on_response_body`.
    pub response_body: bool,
    /// Imports `proxy_send_local_response` (an answer given at the response head replaces the
    /// upstream's body, which takes the response body phase).
    pub local_response: bool,
    /// Exports `proxy_on_log`, `proxy_on_done` or `proxy_on_delete`: it is told when a request
    /// ends.
    pub finish: bool,
    /// Imports a call that reads a head or a property (see [`HEAD_READERS`]): later callbacks
    /// may read the request and response heads, so a copy of each is kept, and the request's
    /// properties (source address, route, ...) are gathered.
    pub reads_heads: bool,
    /// Imports `proxy_http_call` or exports `proxy_on_http_call_response`: a hook may wait for
    /// call answers (asynchronously, on the same instance), so the session must be one an
    /// asynchronous wait can take out of the request and put back (shared, not in place).
    pub http_calls: bool,
    /// Exports `proxy_on_tick` or `proxy_on_queue_ready`: the config runs a root instance and
    /// its task (`root.rs`). No effect on the chain.
    pub root_events: bool,
}

impl Capabilities {
    /// Reads `module`'s exports and imports.
    pub fn of(module: &Module) -> Self {
        let exports = |name: &str| {
            module
                .get_export(name)
                .is_some_and(|e| matches!(e, ExternType::Func(_)))
        };
        let imports = |names: &[&str]| {
            module
                .imports()
                .any(|i| i.module() == "env" && names.contains(&i.name()))
        };
        Self {
            request_body: exports("proxy_on_request_body"),
            response_body: exports("proxy_on_response_body"),
            local_response: imports(&["proxy_send_local_response"]),
            finish: ["proxy_on_log", "proxy_on_done", "proxy_on_delete"]
                .iter()
                .any(|name| exports(name)),
            reads_heads: imports(&HEAD_READERS),
            http_calls: imports(&["proxy_http_call"]) || exports("proxy_on_http_call_response"),
            root_events: exports("proxy_on_tick") || exports("proxy_on_queue_ready"),
        }
    }

    /// Whether a request's session may live in place in the request (no `Arc<Mutex>`): only
    /// the head hooks use it (no body, end-of-request or local-response body phase) and no
    /// hook waits for call answers.
    pub fn session_in_place(self) -> bool {
        self.phases() == Phases::HEADS && !self.http_calls
    }

    /// The chain phases the filter takes part in (the heads always: a request's context starts
    /// at its request head).
    pub fn phases(self) -> Phases {
        let mut phases = Phases::HEADS;
        if self.request_body {
            phases = phases | Phases::REQUEST_BODY;
        }
        if self.response_body || self.local_response {
            phases = phases | Phases::RESPONSE_BODY;
        }
        if self.finish {
            phases = phases | Phases::COMPLETE;
        }
        phases
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::wasm::engine;

    fn caps(body: &str) -> Capabilities {
        let wat = format!(
            r#"(module {body} (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1")))"#
        );
        let module = Module::new(engine::engine(), wat::parse_str(wat).unwrap()).unwrap();
        Capabilities::of(&module)
    }

    #[test]
    fn phases_follow_the_modules_interface() {
        let heads = Capabilities::default();
        // (module body, capabilities, phases, session in place)
        let rows: [(&str, Capabilities, Phases, bool); 11] = [
            (
                r#"(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))"#,
                heads,
                Phases::HEADS,
                true,
            ),
            (
                r#"(func (export "proxy_on_request_body") (param i32 i32 i32) (result i32) (i32.const 0))"#,
                Capabilities {
                    request_body: true,
                    ..heads
                },
                Phases::REQUEST_BODY,
                false,
            ),
            (
                r#"(func (export "proxy_on_response_body") (param i32 i32 i32) (result i32) (i32.const 0))"#,
                Capabilities {
                    response_body: true,
                    ..heads
                },
                Phases::RESPONSE_BODY,
                false,
            ),
            (
                r#"(import "env" "proxy_send_local_response" (func (param i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))"#,
                Capabilities {
                    local_response: true,
                    ..heads
                },
                Phases::RESPONSE_BODY,
                false,
            ),
            (
                r#"(func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))"#,
                Capabilities {
                    finish: true,
                    ..heads
                },
                Phases::COMPLETE,
                false,
            ),
            (
                r#"(func (export "proxy_on_log") (param i32))"#,
                Capabilities {
                    finish: true,
                    ..heads
                },
                Phases::COMPLETE,
                false,
            ),
            (
                r#"(import "env" "proxy_get_property" (func (param i32 i32 i32 i32) (result i32)))"#,
                Capabilities {
                    reads_heads: true,
                    ..heads
                },
                Phases::HEADS,
                true,
            ),
            (
                r#"(import "env" "proxy_http_call" (func (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))"#,
                Capabilities {
                    http_calls: true,
                    ..heads
                },
                Phases::HEADS,
                false,
            ),
            (
                r#"(func (export "proxy_on_http_call_response") (param i32 i32 i32 i32 i32))"#,
                Capabilities {
                    http_calls: true,
                    ..heads
                },
                Phases::HEADS,
                false,
            ),
            (
                r#"(func (export "proxy_on_tick") (param i32))"#,
                Capabilities {
                    root_events: true,
                    ..heads
                },
                Phases::HEADS,
                true,
            ),
            (
                r#"(func (export "proxy_on_queue_ready") (param i32 i32))"#,
                Capabilities {
                    root_events: true,
                    ..heads
                },
                Phases::HEADS,
                true,
            ),
        ];
        for (i, (body, expected, phases, in_place)) in rows.into_iter().enumerate() {
            let got = caps(body);
            assert_eq!(got, expected, "row {i}: {body}");
            assert_eq!(got.phases(), phases, "row {i}: {body}");
            assert_eq!(got.session_in_place(), in_place, "row {i}: {body}");
        }
    }

    /// The `wasm` kind's declared phases are exactly those a module implementing every
    /// callback takes part in: none wider than any instance can ask for, none missing.
    #[test]
    fn the_kinds_declared_phases_are_what_a_full_module_asks_for() {
        let every = caps(concat!(
            r#"(import "env" "proxy_send_local_response" (func (param i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))"#,
            r#"(func (export "proxy_on_request_body") (param i32 i32 i32) (result i32) (i32.const 0))"#,
            r#"(func (export "proxy_on_response_body") (param i32 i32 i32) (result i32) (i32.const 0))"#,
            r#"(func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))"#,
        ));
        assert_eq!(
            every.phases(),
            <crate::plugins::wasm::Wasm as crate::plugin::PluginFactory>::PHASES
        );
    }
}
