;; Tail calls (return_call, return_call_indirect): a loop without a loop
;; instruction. Rebuild with
;;   wat2wasm --enable-tail-call --debug-names tail.wat -o tail.wasm
(module
  (type $t (func (param i32 i64) (result i64)))
  (table 1 funcref)
  (elem (i32.const 0) $count2)
  ;; count(n, acc) = acc + n, by n tail calls through two functions.
  (func $count (export "count") (param $n i32) (param $acc i64) (result i64)
    (if (result i64) (i32.eqz (local.get $n))
      (then (local.get $acc))
      (else (return_call_indirect (type $t)
        (i32.sub (local.get $n) (i32.const 1))
        (i64.add (local.get $acc) (i64.const 1))
        (i32.const 0)))))
  (func $count2 (type $t)
    (return_call $count (local.get 0) (local.get 1)))
)
