package download

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// ErrBusy is returned by Remove when a download of the same file holds its
// lock.
var ErrBusy = errors.New("a download of this file is in progress")

// StatusError is an HTTP answer that is not the file. Its message says what
// the status most likely means for a model download.
type StatusError struct {
	// URL is the address that was requested (before redirects).
	URL string
	// Code is the HTTP status code, Status its full text ("404 Not Found").
	Code   int
	Status string
	// TokenSent tells whether an access token went with the request.
	TokenSent bool
	// RetryAfter is the server's Retry-After, 0 when absent.
	RetryAfter time.Duration
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("GET %s: server answered %s", e.URL, e.Status)
	token := "set HF_TOKEN to a Hugging Face access token (https://huggingface.co/settings/tokens)"
	if e.TokenSent {
		token = "check that HF_TOKEN is a valid token with access to this repository"
	}
	switch {
	case e.Code == http.StatusNotFound || e.Code == http.StatusGone:
		msg += ": the repository, file or revision may be wrong, or the repository is gated or private (" + token + ")"
	case e.Code == http.StatusUnauthorized:
		msg += ": authentication required: the repository may be gated or private, or its name may be wrong; " +
			token + " and accept the model's terms on its page"
	case e.Code == http.StatusForbidden:
		msg += ": access denied: the repository may be gated (accept the model's terms on its page) or private; " + token
	case e.Code == http.StatusTooManyRequests:
		msg += ": rate limited; try again later"
		if !e.TokenSent {
			msg += " or " + token
		}
	case e.Code >= 500:
		msg += ": server error; try again later"
	}
	return msg
}

// Temporary reports whether retrying may help (429 and 5xx but 501).
func (e *StatusError) Temporary() bool {
	return e.Code == http.StatusTooManyRequests || (e.Code >= 500 && e.Code != http.StatusNotImplemented)
}

// MismatchError is a downloaded file that is not the one expected: its
// size or its SHA-256 differs. The partial download has been deleted.
type MismatchError struct {
	// URL is where the file came from, Dest where it was to go.
	URL, Dest string
	// What is "size" or "sha256".
	What string
	// Expected and Got are the wanted and the actual value.
	Expected, Got string
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("download %s to %s: %s mismatch: expected %s, got %s (the partial download was deleted; "+
		"if the file changed upstream, update the catalog entry)", e.URL, e.Dest, e.What, e.Expected, e.Got)
}

// retryable marks an attempt failure that a new attempt may overcome.
type retryable struct {
	err   error
	after time.Duration // server-requested wait, 0 if none
}

func (r *retryable) Error() string { return r.err.Error() }
func (r *retryable) Unwrap() error { return r.err }

// errRestart asks for an immediate new attempt from byte 0: the partial
// file could not be continued (server ignored Range, file changed).
var errRestart = errors.New("restart from the beginning")
