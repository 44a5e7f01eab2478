;; Every kind of function-index reference, for the index-shifting tests.
;; Rebuild with
;;   wat2wasm --debug-names indices.wat -o indices.wasm
(module
  (type $void (func)) ;; a () -> () type Yields should reuse
  (import "env" "one" (func $one (result i32)))
  (import "env" "g" (global $gimp i32))
  (import "env" "two" (func $two (result i32)))
  (import "env" "three" (func $three (param i32) (result i32)))
  (table $t 8 funcref)
  (table $t2 4 funcref)
  (memory 1)
  (global $started (mut i32) (i32.const 0))
  (global $fref funcref (ref.func $f10))

  (func $init (type $void) (global.set $started (i32.add (global.get $gimp) (i32.const 42))))
  (start $init)

  (func $f10 (result i32) (i32.const 10))
  (func $f20 (result i32) (i32.const 20))
  (func $f30 (result i32) (i32.const 30))
  (func $f40 (result i32) (i32.const 40))
  (func $f50 (result i32) (i32.const 50))
  (func $f60 (result i32) (i32.const 60))

  (elem (i32.const 0) $f10 $f20)                                ;; flags 0
  (elem $pass func $f30 $f40)                                   ;; flags 1
  (elem (table $t2) (i32.const 0) func $f50)                    ;; flags 2
  (elem declare func $f60)                                      ;; flags 3
  (elem (i32.const 2) funcref (ref.func $f30) (ref.null func))  ;; flags 4
  (elem $passx funcref (ref.func $f50) (ref.func $f10) (ref.null func)) ;; flags 5
  (elem (table $t2) (i32.const 1) funcref (ref.func $f40) (ref.null func)) ;; flags 6
  (elem declare funcref (ref.func $f20) (ref.null func))       ;; flags 7

  (func (export "started") (result i32) (global.get $started))
  (func (export "call_table") (param $i i32) (result i32)
    (call_indirect $t (result i32) (local.get $i)))
  (func (export "call_table2") (param $i i32) (result i32)
    (call_indirect $t2 (result i32) (local.get $i)))
  (func (export "init_passive")
    (table.init $t $pass (i32.const 4) (i32.const 0) (i32.const 2))
    (table.init $t $passx (i32.const 6) (i32.const 0) (i32.const 2)))
  (func (export "call_global") (result i32)
    (table.set $t (i32.const 7) (global.get $fref))
    (call_indirect $t (result i32) (i32.const 7)))
  (func (export "call_ref_func") (result i32)
    (table.set $t (i32.const 7) (ref.func $f60))
    (call_indirect $t (result i32) (i32.const 7)))
  (func (export "call_ref_func7") (result i32)
    (table.set $t (i32.const 7) (ref.func $f20))
    (call_indirect $t (result i32) (i32.const 7)))
  (func $direct (export "direct") (result i32)
    (i32.add (call $f10) (call $f60)))
  (func (export "imports") (result i32)
    (i32.add (i32.add (call $one) (call $two)) (call $three (i32.const 5))))
  (func (export "loop_calls") (param $n i32) (result i32)
    (local $acc i32)
    (loop $l
      (local.set $acc (i32.add (local.get $acc) (call $direct)))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br_if $l (local.get $n)))
    (local.get $acc))
  (export "reexport" (func $two))
  (export "f50" (func $f50))
)
