;; Imports mdsa:sched.yield with a type other than () -> (): Yields must
;; refuse it. Rebuild with
;;   wat2wasm wrongtype.wat -o wrongtype.wasm
(module
  (import "mdsa:sched" "yield" (func $y (param i32)))
  (func (export "f") (call $y (i32.const 1)))
)
