// Package textcap bounds text that ends up in error messages, replies and
// logs when part of it came from somewhere untrusted (a plugin, a client, a
// tool's output), so that no input can make the host write megabytes.
package textcap

import (
	"strconv"
	"unicode/utf8"
)

// Truncate returns s cut to at most n bytes at a rune boundary, with a note
// of how many bytes were left out; s itself when it fits.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := max(n, 0)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "... (" + strconv.Itoa(len(s)-cut) + " more bytes)"
}
