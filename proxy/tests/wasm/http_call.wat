;; A Proxy-Wasm (ABI 0.2.1) auth filter written by hand, the pattern of every auth filter built on
;; proxy_http_call:
;;   request headers: without `x-call`, Continue. Otherwise it calls the upstream named by the
;;     value of `x-call` with `GET /check` (`:authority: auth.test`, timeout 5000 ms) and
;;     returns Pause. A refused call adds `x-call-status: <the status digit>` to the request
;;     and continues (the filter's fallback).
;;   response headers: the same call when the response carries `x-call` (then Pause).
;;   `x-call-after-body: NAME` instead: request headers Pause without a call; the whole body
;;     then comes (headers still held) and its callback calls NAME the same way.
;;   http call response: no headers (failure, timeout) → answers 503 "call failed\n". A
;;     `:status` not starting with `2` → answers 403 with the call's answer body. Otherwise it
;;     copies `x-user` from the answer onto the request and the response (whichever the hook
;;     holds), adds `x-call-pairs: yes` when
;;     proxy_get_header_map_pairs(HttpCallResponseHeaders) counts as many pairs as the callback
;;     was told, and resumes the request (proxy_continue_stream).
(module
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_pairs" (func $pairs (param i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes" (func $buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_send_local_response"
    (func $respond (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_http_call"
    (func $http_call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_continue_stream" (func $continue (param i32) (result i32)))
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 0) "x-call")
  (data (i32.const 16) "x-call-status")
  (data (i32.const 32) "x-user")
  (data (i32.const 48) ":status")
  (data (i32.const 64) "call failed\n")
  (data (i32.const 80) "0123456789")
  (data (i32.const 96) "x-call-pairs")
  (data (i32.const 112) "yes")
  (data (i32.const 208) "x-call-after-body")
  ;; The call's headers, serialized: :method GET, :path /check, :authority auth.test (74 bytes).
  (data (i32.const 128) "\03\00\00\00\07\00\00\00\03\00\00\00\05\00\00\00\06\00\00\00\0a\00\00\00\09\00\00\00\3a\6d\65\74\68\6f\64\00\47\45\54\00\3a\70\61\74\68\00\2f\63\68\65\63\6b\00\3a\61\75\74\68\6f\72\69\74\79\00\61\75\74\68\2e\74\65\73\74\00")
  ;; 1024: returned pointer, 1028: returned size, 1032: the call's token.

  (func (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32)
    (global.set $heap (i32.const 4096)))

  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (if (i32.eqz (call $get (i32.const 0) (i32.const 208) (i32.const 17) (i32.const 1024) (i32.const 1028)))
      (then (return (i32.const 1))))
    (call $call_named_by (i32.const 0) (i32.const 0) (i32.const 6)))

  (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32)
    (drop (call $call_named_by (i32.const 0) (i32.const 208) (i32.const 17)))
    (i32.const 0))

  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (call $call_named_by (i32.const 2) (i32.const 0) (i32.const 6)))

  ;; Calls the upstream named by header ($name, $len) of map $map; returns the action.
  (func $call_named_by (param $map i32) (param $name i32) (param $len i32) (result i32)
    (local $status i32)
    (if (call $get (local.get $map) (local.get $name) (local.get $len) (i32.const 1024) (i32.const 1028))
      (then (return (i32.const 0))))
    (local.set $status
      (call $http_call (i32.load (i32.const 1024)) (i32.load (i32.const 1028))
        (i32.const 128) (i32.const 74) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)
        (i32.const 5000) (i32.const 1032)))
    (if (local.get $status)
      (then
        (drop (call $add (i32.const 0) (i32.const 16) (i32.const 13)
          (i32.add (i32.const 80) (local.get $status)) (i32.const 1)))
        (return (i32.const 0))))
    (i32.const 1))

  (func (export "proxy_on_http_call_response")
    (param $context i32) (param $token i32) (param $headers i32) (param $body i32) (param $trailers i32)
    (if (i32.eqz (local.get $headers))
      (then
        (drop (call $respond (i32.const 503) (i32.const 0) (i32.const 0)
          (i32.const 64) (i32.const 12) (i32.const 0) (i32.const 0) (i32.const -1)))
        (return)))
    (drop (call $get (i32.const 6) (i32.const 48) (i32.const 7) (i32.const 1024) (i32.const 1028)))
    (if (i32.ne (i32.load8_u (i32.load (i32.const 1024))) (i32.const 50))
      (then
        (drop (call $buffer (i32.const 4) (i32.const 0) (local.get $body)
          (i32.const 1024) (i32.const 1028)))
        (drop (call $respond (i32.const 403) (i32.const 0) (i32.const 0)
          (i32.load (i32.const 1024)) (i32.load (i32.const 1028))
          (i32.const 0) (i32.const 0) (i32.const -1)))
        (return)))
    (if (i32.eqz (call $get (i32.const 6) (i32.const 32) (i32.const 6) (i32.const 1024) (i32.const 1028)))
      (then
        (drop (call $add (i32.const 0) (i32.const 32) (i32.const 6)
          (i32.load (i32.const 1024)) (i32.load (i32.const 1028))))
        (drop (call $add (i32.const 2) (i32.const 32) (i32.const 6)
          (i32.load (i32.const 1024)) (i32.load (i32.const 1028))))))
    (if (i32.eqz (call $pairs (i32.const 6) (i32.const 1024) (i32.const 1028)))
      (then
        (if (i32.eq (i32.load (i32.load (i32.const 1024))) (local.get $headers))
          (then
            (drop (call $add (i32.const 0) (i32.const 96) (i32.const 12) (i32.const 112) (i32.const 3)))))))
    (drop (call $continue (i32.const 0))))

  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
)
