// Command goplugin is a tiny Go-compiled WebAssembly module (wasip1,
// c-shared) for the instrument tests: the Go compiler's output has its own
// shape (a resumable-call dispatch loop in every function) that Yields must
// handle.
package main

func main() {}

// sum returns 0 + 1 + ... + n-1.
//
//go:wasmexport sum
func sum(n int32) int64 {
	var s int64
	for i := int32(0); i < n; i++ {
		s += int64(i)
	}
	return s
}

// fib is the recursive Fibonacci function.
//
//go:wasmexport fib
func fib(n int32) int32 {
	if n < 2 {
		return n
	}
	return fib(n-1) + fib(n-2)
}

// words counts the words in a generated text, to run some of the standard
// library (maps, strings, allocation).
//
//go:wasmexport words
func words(n int32) int32 {
	seen := map[string]int{}
	for i := int32(0); i < n; i++ {
		seen[string(rune('a'+i%26))+string(rune('a'+i%7))]++
	}
	return int32(len(seen))
}

// spin never returns.
//
//go:wasmexport spin
func spin() {
	for {
	}
}
