//! What a filter's module can do, read from its exports and imports when it is compiled: the
//! chain phases it takes part in, whether it has anything to be told at the end of a request,
//! and whether it can read a request or response head after that head's own callback.
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
        }
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
        let rows: [(&str, Capabilities, Phases); 7] = [
            (
                r#"(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))"#,
                heads,
                Phases::HEADS,
            ),
            (
                r#"(func (export "proxy_on_request_body") (param i32 i32 i32) (result i32) (i32.const 0))"#,
                Capabilities {
                    request_body: true,
                    ..heads
                },
                Phases::REQUEST_BODY,
            ),
            (
                r#"(func (export "proxy_on_response_body") (param i32 i32 i32) (result i32) (i32.const 0))"#,
                Capabilities {
                    response_body: true,
                    ..heads
                },
                Phases::RESPONSE_BODY,
            ),
            (
                r#"(import "env" "proxy_send_local_response" (func (param i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))"#,
                Capabilities {
                    local_response: true,
                    ..heads
                },
                Phases::RESPONSE_BODY,
            ),
            (
                r#"(func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))"#,
                Capabilities {
                    finish: true,
                    ..heads
                },
                Phases::COMPLETE,
            ),
            (
                r#"(func (export "proxy_on_log") (param i32))"#,
                Capabilities {
                    finish: true,
                    ..heads
                },
                Phases::COMPLETE,
            ),
            (
                r#"(import "env" "proxy_get_property" (func (param i32 i32 i32 i32) (result i32)))"#,
                Capabilities {
                    reads_heads: true,
                    ..heads
                },
                Phases::HEADS,
            ),
        ];
        for (i, (body, expected, phases)) in rows.into_iter().enumerate() {
            let got = caps(body);
            assert_eq!(got, expected, "row {i}: {body}");
            assert_eq!(got.phases(), phases, "row {i}: {body}");
        }
    }
}
