;; A Proxy-Wasm (ABI 0.2.1) filter written by hand that uses its root context:
;;   configure: defines the counters `ticks` and `dequeued`, asks for a tick every 5 ms (hookway
;;     raises it to 10 ms), registers the shared queue `jobs`. A configuration `t` makes every
;;     instance trap on its second tick; a configuration `c` makes its first tick call the
;;     cluster `auth` (`GET /check`, `:authority: auth.test`).
;;   tick: counts `ticks`.
;;   http call response: writes the answer's `x-user` (or `failed` without headers) into the
;;     shared data key `wasm-root-test-call`; a refused call writes `refused` there at once.
;;   request headers: resolves `jobs`, enqueues the message `job:` followed by the request's
;;     `x-job` header (or nothing), adds `x-enqueued: <status digit>` to the request.
;;   queue ready: dequeues one message into the shared data key `wasm-root-test-last` and counts
;;     `dequeued`.
(module
  (import "env" "proxy_define_metric" (func $define (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_increment_metric" (func $increment (param i32 i64) (result i32)))
  (import "env" "proxy_set_tick_period_milliseconds" (func $tick_period (param i32) (result i32)))
  (import "env" "proxy_register_shared_queue" (func $register (param i32 i32 i32) (result i32)))
  (import "env" "proxy_resolve_shared_queue" (func $resolve (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_enqueue_shared_queue" (func $enqueue (param i32 i32 i32) (result i32)))
  (import "env" "proxy_dequeue_shared_queue" (func $dequeue (param i32 i32 i32) (result i32)))
  (import "env" "proxy_set_shared_data" (func $set_shared (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes" (func $buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_http_call"
    (func $http_call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 4096))
  (global $ticks (mut i32) (i32.const 0))
  (global $trap (mut i32) (i32.const 0))
  (global $call (mut i32) (i32.const 0))
  (data (i32.const 0) "ticks")
  (data (i32.const 16) "dequeued")
  (data (i32.const 32) "jobs")
  (data (i32.const 48) "wasm-root-test-last")
  (data (i32.const 80) "x-enqueued")
  (data (i32.const 96) "0123456789")
  (data (i32.const 112) "x-job")
  (data (i32.const 128) "job:")
  (data (i32.const 144) "auth")
  (data (i32.const 160) "wasm-root-test-call")
  (data (i32.const 192) "refused")
  (data (i32.const 208) "failed")
  (data (i32.const 224) "x-user")
  ;; :method GET, :path /check, :authority auth.test, serialized (74 bytes).
  (data (i32.const 256) "\03\00\00\00\07\00\00\00\03\00\00\00\05\00\00\00\06\00\00\00\0a\00\00\00\09\00\00\00\3a\6d\65\74\68\6f\64\00\47\45\54\00\3a\70\61\74\68\00\2f\63\68\65\63\6b\00\3a\61\75\74\68\6f\72\69\74\79\00\61\75\74\68\2e\74\65\73\74\00")
  ;; 1024: returned pointer, 1028: returned size, 1032: id of `ticks`, 1036: id of `dequeued`,
  ;; 1040: the queue id registered, 1044: the queue id resolved, 1048: the call's token.

  (func (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32)
    (global.set $heap (i32.const 4096)))
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (drop (call $define (i32.const 0) (i32.const 0) (i32.const 5) (i32.const 1032)))
    (drop (call $define (i32.const 0) (i32.const 16) (i32.const 8) (i32.const 1036)))
    (drop (call $tick_period (i32.const 5)))
    (drop (call $register (i32.const 32) (i32.const 4) (i32.const 1040)))
    (if (i32.eqz (call $buffer (i32.const 7) (i32.const 0) (i32.const 1) (i32.const 1024) (i32.const 1028)))
      (then
        (if (i32.and (i32.eq (i32.load (i32.const 1028)) (i32.const 1))
                     (i32.eq (i32.load8_u (i32.load (i32.const 1024))) (i32.const 116)))
          (then (global.set $trap (i32.const 1))))
        (if (i32.and (i32.eq (i32.load (i32.const 1028)) (i32.const 1))
                     (i32.eq (i32.load8_u (i32.load (i32.const 1024))) (i32.const 99)))
          (then (global.set $call (i32.const 1))))))
    (i32.const 1))

  (func (export "proxy_on_tick") (param i32)
    (global.set $ticks (i32.add (global.get $ticks) (i32.const 1)))
    (drop (call $increment (i32.load (i32.const 1032)) (i64.const 1)))
    (if (i32.and (global.get $trap) (i32.eq (global.get $ticks) (i32.const 2)))
      (then unreachable))
    (if (i32.and (global.get $call) (i32.eq (global.get $ticks) (i32.const 1)))
      (then
        (if (call $http_call (i32.const 144) (i32.const 4) (i32.const 256) (i32.const 74)
              (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 1000) (i32.const 1048))
          (then
            (drop (call $set_shared (i32.const 160) (i32.const 19) (i32.const 192) (i32.const 7) (i32.const 0))))))))

  (func (export "proxy_on_http_call_response")
    (param i32) (param i32) (param $headers i32) (param i32) (param i32)
    (if (i32.eqz (local.get $headers))
      (then
        (drop (call $set_shared (i32.const 160) (i32.const 19) (i32.const 208) (i32.const 6) (i32.const 0)))
        (return)))
    (if (i32.eqz (call $get (i32.const 6) (i32.const 224) (i32.const 6) (i32.const 1024) (i32.const 1028)))
      (then
        (drop (call $set_shared (i32.const 160) (i32.const 19)
          (i32.load (i32.const 1024)) (i32.load (i32.const 1028)) (i32.const 0))))))

  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (local $status i32)
    (local $message i32)
    (local $len i32)
    (local.set $status (call $resolve (i32.const 0) (i32.const 0) (i32.const 32) (i32.const 4) (i32.const 1044)))
    (if (i32.eqz (local.get $status))
      (then
        ;; "job:" + x-job, built at the heap.
        (local.set $message (i32.const 2048))
        (memory.copy (local.get $message) (i32.const 128) (i32.const 4))
        (local.set $len (i32.const 4))
        (if (i32.eqz (call $get (i32.const 0) (i32.const 112) (i32.const 5) (i32.const 1024) (i32.const 1028)))
          (then
            (memory.copy (i32.add (local.get $message) (i32.const 4))
              (i32.load (i32.const 1024)) (i32.load (i32.const 1028)))
            (local.set $len (i32.add (i32.const 4) (i32.load (i32.const 1028))))))
        (local.set $status
          (call $enqueue (i32.load (i32.const 1044)) (local.get $message) (local.get $len)))))
    (drop (call $add (i32.const 0) (i32.const 80) (i32.const 10)
      (i32.add (i32.const 96) (local.get $status)) (i32.const 1)))
    (i32.const 0))

  (func (export "proxy_on_queue_ready") (param i32) (param $queue i32)
    (if (i32.eqz (call $dequeue (local.get $queue) (i32.const 1024) (i32.const 1028)))
      (then
        (drop (call $set_shared (i32.const 48) (i32.const 19)
          (i32.load (i32.const 1024)) (i32.load (i32.const 1028)) (i32.const 0)))
        (drop (call $increment (i32.load (i32.const 1036)) (i64.const 1))))))

  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
)
