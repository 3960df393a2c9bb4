;; A Proxy-Wasm (ABI 0.2.1) test filter, written by hand. Behaviour by request header:
;;   x-trap          request headers: traps (`unreachable`)
;;   x-loop          request headers: loops forever (the deadline must stop it)
;;   x-grow          request headers: grows memory by 64 MiB, traps when refused
;;   x-deny          request headers: answers 403 "denied by wasm" (send_local_response)
;;   x-replace-body  response body: buffers to the end, replaces it with "replaced by wasm"
;;   x-pause         request headers: Pause (after the headers below); the whole request body
;;                   then comes with the headers open: adds `x-body-seen: yes`, replaces the
;;                   body with "rewritten"
;; otherwise it adds `x-trace: wasm` to the request and the response, `x-wasm-config` (the
;; plugin configuration) and `x-wasm-path` (property request.path) to the request, and
;; `x-unimplemented: yes` when proxy_call_foreign_function answers Unimplemented (12). It defines the
;; counter `requests` and counts every request-head call.
(module
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes" (func $buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_buffer_bytes" (func $set_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_property" (func $property (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_send_local_response"
    (func $respond (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_define_metric" (func $define (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_increment_metric" (func $increment (param i32 i64) (result i32)))
  (import "env" "proxy_call_foreign_function"
    (func $foreign (param i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 0) "x-trace")
  (data (i32.const 16) "wasm")
  (data (i32.const 32) "x-trap")
  (data (i32.const 48) "x-loop")
  (data (i32.const 64) "x-grow")
  (data (i32.const 80) "x-deny")
  (data (i32.const 96) "denied by wasm\n")
  (data (i32.const 128) "x-wasm-config")
  (data (i32.const 144) "request\00path")
  (data (i32.const 160) "x-wasm-path")
  (data (i32.const 176) "x-unimplemented")
  (data (i32.const 192) "yes")
  (data (i32.const 208) "x-replace-body")
  (data (i32.const 224) "replaced by wasm\n")
  (data (i32.const 256) "requests")
  (data (i32.const 288) "x-pause")
  (data (i32.const 304) "x-body-seen")
  (data (i32.const 320) "rewritten")
  ;; 1024: returned pointer, 1028: returned size, 1032: the counter's id.

  ;; A bump allocator, reset for every HTTP context.
  (func (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (drop (call $define (i32.const 0) (i32.const 256) (i32.const 8) (i32.const 1032)))
    (i32.const 1))
  (func (export "proxy_on_context_create") (param i32 i32)
    (global.set $heap (i32.const 4096)))

  ;; Whether request header (name, len) is present.
  (func $has (param $name i32) (param $len i32) (result i32)
    (i32.eqz (call $get (i32.const 0) (local.get $name) (local.get $len)
      (i32.const 1024) (i32.const 1028))))
  ;; Adds header (name, len) to map $map with the value last returned by the host.
  (func $add_returned (param $map i32) (param $name i32) (param $len i32)
    (drop (call $add (local.get $map) (local.get $name) (local.get $len)
      (i32.load (i32.const 1024)) (i32.load (i32.const 1028)))))

  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $increment (i32.load (i32.const 1032)) (i64.const 1)))
    (if (call $has (i32.const 32) (i32.const 6)) (then unreachable))
    (if (call $has (i32.const 48) (i32.const 6)) (then (loop $forever (br $forever))))
    (if (call $has (i32.const 64) (i32.const 6))
      (then
        (if (i32.eq (memory.grow (i32.const 1024)) (i32.const -1)) (then unreachable))))
    (if (call $has (i32.const 80) (i32.const 6))
      (then
        (drop (call $respond (i32.const 403) (i32.const 0) (i32.const 0)
          (i32.const 96) (i32.const 15) (i32.const 0) (i32.const 0) (i32.const -1)))
        (return (i32.const 1))))
    (drop (call $add (i32.const 0) (i32.const 0) (i32.const 7) (i32.const 16) (i32.const 4)))
    (if (i32.eqz (call $buffer (i32.const 7) (i32.const 0) (i32.const 4096)
          (i32.const 1024) (i32.const 1028)))
      (then (call $add_returned (i32.const 0) (i32.const 128) (i32.const 13))))
    (if (i32.eqz (call $property (i32.const 144) (i32.const 12) (i32.const 1024) (i32.const 1028)))
      (then (call $add_returned (i32.const 0) (i32.const 160) (i32.const 11))))
    (if (i32.eq (call $foreign (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)
          (i32.const 1024) (i32.const 1028))
          (i32.const 12))
      (then
        (drop (call $add (i32.const 0) (i32.const 176) (i32.const 15) (i32.const 192) (i32.const 3)))))
    (if (result i32) (call $has (i32.const 288) (i32.const 7))
      (then (i32.const 1))
      (else (i32.const 0))))

  (func (export "proxy_on_request_body") (param $context i32) (param $size i32) (param $end i32)
    (result i32)
    (if (i32.eqz (call $has (i32.const 288) (i32.const 7))) (then (return (i32.const 0))))
    (if (i32.eqz (local.get $end)) (then (return (i32.const 1))))
    (drop (call $add (i32.const 0) (i32.const 304) (i32.const 11) (i32.const 192) (i32.const 3)))
    (drop (call $set_buffer (i32.const 0) (i32.const 0) (local.get $size)
      (i32.const 320) (i32.const 9)))
    (i32.const 0))

  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (drop (call $add (i32.const 2) (i32.const 0) (i32.const 7) (i32.const 16) (i32.const 4)))
    (i32.const 0))

  (func (export "proxy_on_response_body") (param $context i32) (param $size i32) (param $end i32)
    (result i32)
    (if (i32.eqz (call $has (i32.const 208) (i32.const 14))) (then (return (i32.const 0))))
    (if (i32.eqz (local.get $end)) (then (return (i32.const 1))))
    (drop (call $set_buffer (i32.const 1) (i32.const 0) (local.get $size)
      (i32.const 224) (i32.const 17)))
    (i32.const 0))

  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
)
