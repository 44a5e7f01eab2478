;; Loop-heavy functions for the instrument tests. Rebuild with
;;   wat2wasm --debug-names loops.wat -o loops.wasm
(module
  (memory (export "memory") 1)

  ;; sum of 0..n-1, one loop iteration per element.
  (func $sum (export "sum") (param $n i32) (result i64)
    (local $i i32) (local $acc i64)
    (block $done
      (br_if $done (i32.eqz (local.get $n)))
      (loop $next
        (local.set $acc (i64.add (local.get $acc) (i64.extend_i32_u (local.get $i))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $next (i32.lt_u (local.get $i) (local.get $n)))))
    (local.get $acc))

  ;; recursive Fibonacci: no loops, only function entries.
  (func $fib (export "fib") (param $n i32) (result i32)
    (if (result i32) (i32.lt_u (local.get $n) (i32.const 2))
      (then (local.get $n))
      (else (i32.add (call $fib (i32.sub (local.get $n) (i32.const 1)))
                     (call $fib (i32.sub (local.get $n) (i32.const 2)))))))

  ;; loops nested in blocks, with br, br_if and br_table to outer labels.
  ;; Counts (i, j) pairs with j < i, i < n, skipping j == 3, stopping the inner
  ;; loop at j == 7, and leaving everything once the count passes 1000.
  (func $nested (export "nested") (param $n i32) (result i32)
    (local $i i32) (local $j i32) (local $count i32)
    (block $out
      (loop $outer
        (br_if $out (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $j (i32.const 0))
        (block $inner_done
          (loop $inner
            (br_if $inner_done (i32.ge_u (local.get $j) (local.get $i)))
            (block $skip
              (block $count_it
                (block $stop
                  ;; j==3 -> skip, j==7 -> stop, otherwise count.
                  (br_table $count_it $count_it $count_it $skip $count_it $count_it $count_it $stop $count_it
                    (local.get $j)))
                ;; $stop
                (br $inner_done))
              ;; $count_it
              (local.set $count (i32.add (local.get $count) (i32.const 1)))
              (br_if $out (i32.gt_u (local.get $count) (i32.const 1000))))
            ;; $skip
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (br $inner)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $outer)))
    (local.get $count))

  ;; a multi-value loop: the loop takes (counter, acc) as parameters, so the
  ;; countdown runs with both on the stack. Returns 3 * n*(n+1)/2.
  (func $multi (export "multi") (param $n i32) (result i32)
    (local $cnt i32) (local $acc i32)
    (local.get $n)
    (i32.const 0)
    (loop $l (param i32 i32) (result i32)
      (local.set $acc)
      (local.set $cnt)
      (if (i32.eqz (local.get $cnt)) (then (return (local.get $acc))))
      (i32.sub (local.get $cnt) (i32.const 1))
      (i32.add (local.get $acc) (i32.mul (local.get $cnt) (i32.const 3)))
      (br $l)))

  ;; SIMD inside a loop: v128.const, i8x16.shuffle, lane ops, loads and stores.
  (func $simd (export "simd") (param $n i32) (result i32)
    (local $v v128) (local $i i32)
    (local.set $v (v128.const i32x4 1 2 3 4))
    (loop $l
      (local.set $v
        (i8x16.shuffle 4 5 6 7 0 1 2 3 12 13 14 15 8 9 10 11
          (i32x4.add (local.get $v) (v128.const i32x4 1 1 1 1))
          (local.get $v)))
      (v128.store offset=16 (i32.const 0) (local.get $v))
      (local.set $v (v128.load32_lane 2 (i32.const 16) (local.get $v)))
      (local.set $v (i32x4.replace_lane 3 (local.get $v) (i32.const 5)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
    (i32.add
      (i32.add (i32x4.extract_lane 0 (local.get $v)) (i32x4.extract_lane 1 (local.get $v)))
      (i32.add (i32x4.extract_lane 2 (local.get $v)) (i32x4.extract_lane 3 (local.get $v)))))

  ;; bulk memory, saturating truncation and sign extension in a loop.
  (func $misc (export "misc") (param $n i32) (result i32)
    (local $i i32) (local $acc i32)
    (memory.fill (i32.const 100) (i32.const 7) (i32.const 64))
    (memory.copy (i32.const 200) (i32.const 100) (i32.const 64))
    (loop $l
      (local.set $acc (i32.add (local.get $acc)
        (i32.add (i32.load8_u (i32.add (i32.const 200) (i32.and (local.get $i) (i32.const 63))))
                 (i32.trunc_sat_f64_s (f64.const 1e30)))))
      (local.set $acc (i32.extend8_s (local.get $acc)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
    (i32.add (local.get $acc) (memory.size)))

  ;; never returns.
  (func $spin (export "spin")
    (loop $forever (br $forever)))
)
