package download

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A host the resolver says does not exist fails at once: retrying with
// back-off took 17 s before failing without a network.
func TestFetchUnknownHostFailsFast(t *testing.T) {
	dest := filepath.Join(t.TempDir(), "m.gguf")
	_, err := Fetch(context.Background(), Request{URL: "http://mdsa-test-host.invalid/m.gguf", Dest: dest},
		Options{Attempts: 5, Backoff: time.Second})
	var dns *net.DNSError
	if !errors.As(err, &dns) {
		t.Skipf("this resolver does not answer .invalid with a DNS error: %v", err)
	}
	if !dns.IsNotFound {
		t.Skipf("this resolver's answer is not 'no such host': %v", err)
	}
	if strings.Contains(err.Error(), "gave up after") {
		t.Fatalf("an unknown host was retried: %v", err)
	}
}

func TestUnreachable(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{&net.DNSError{Err: "no such host", Name: "x", IsNotFound: true}, true},
		{&net.DNSError{Err: "server misbehaving", Name: "x", IsTemporary: true}, false},
		{fmt.Errorf("dial: %w", syscall.ENETUNREACH), true},
		{fmt.Errorf("dial: %w", syscall.ECONNRESET), false},
	} {
		if got := unreachable(c.err); got != c.want {
			t.Errorf("%v: unreachable %v, want %v", c.err, got, c.want)
		}
	}
}
