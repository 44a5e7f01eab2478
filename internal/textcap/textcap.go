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

// Error returns err, or when its message is over n bytes an error whose
// message is cut to n (Truncate) and which still unwraps to err, so that
// errors.Is and errors.As see through it.
func Error(err error, n int) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if len(msg) <= n {
		return err
	}
	return &capped{err: err, msg: Truncate(msg, n)}
}

type capped struct {
	err error
	msg string
}

func (c *capped) Error() string { return c.msg }
func (c *capped) Unwrap() error { return c.err }
