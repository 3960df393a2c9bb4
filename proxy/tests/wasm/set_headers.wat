;; The benchmark filter of issue 17: sets one request header and one response header
;; (`proxy_replace_header_map_value`), nothing else. Exports no body callbacks.
(module
  (import "env" "proxy_replace_header_map_value"
    (func $replace (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "x-wasm-request")
  (data (i32.const 16) "x-wasm-response")
  (data (i32.const 32) "1")
  (func (export "malloc") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $replace (i32.const 0) (i32.const 0) (i32.const 14) (i32.const 32) (i32.const 1)))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (drop (call $replace (i32.const 2) (i32.const 16) (i32.const 15) (i32.const 32) (i32.const 1)))
    (i32.const 0))
)
