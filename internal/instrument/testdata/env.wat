;; The "env" module indices.wasm imports from. Rebuild with
;;   wat2wasm env.wat -o env.wasm
(module
  (func (export "one") (result i32) (i32.const 1))
  (func (export "two") (result i32) (i32.const 2))
  (func (export "three") (param i32) (result i32) (i32.mul (local.get 0) (i32.const 3)))
  (global (export "g") i32 (i32.const 100))
)
