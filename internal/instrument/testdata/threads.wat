;; Atomics in a loop (threads proposal). Rebuild with
;;   wat2wasm --enable-threads --debug-names threads.wat -o threads.wasm
(module
  (memory 1 1 shared)
  (func (export "atomics") (param $n i32) (result i32)
    (local $i i32)
    (loop $l
      (drop (i32.atomic.rmw.add (i32.const 0) (i32.const 2)))
      (atomic.fence)
      (i64.atomic.store offset=8 (i32.const 0) (i64.extend_i32_u (local.get $i)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
    (i32.add (i32.atomic.load (i32.const 0)) (i32.wrap_i64 (i64.atomic.load offset=8 (i32.const 0)))))
)
