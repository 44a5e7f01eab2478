package ociplugins

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/mdsa-go/mdsa/internal/testutil"
)

func TestParseRef(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Ref
		err  string
	}{
		{"oci://localhost:5000/mdsa/finance:stable", Ref{Registry: "localhost:5000", Repository: "mdsa/finance", Tag: "stable"}, ""},
		{"oci://ghcr.io/acme/plugins/finance", Ref{Registry: "ghcr.io", Repository: "acme/plugins/finance", Tag: "latest"}, ""},
		{"oci://r.example/finance@sha256:" + strings.Repeat("ab", 32), Ref{Registry: "r.example", Repository: "finance", Digest: "sha256:" + strings.Repeat("ab", 32)}, ""},
		{"localhost:5000/finance:1", Ref{}, "oci://"},
		{"oci://localhost:5000", Ref{}, "no repository"},
		{"oci://r/Finance:1", Ref{}, "invalid"},
		{"oci://r/f@sha256:zz", Ref{}, "bad digest"},
		{"oci://r/f:-bad", Ref{}, "bad tag"},
	} {
		got, err := ParseRef(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: %v, want an error with %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: %+v %v", tc.in, got, err)
		}
		if back, err := ParseRef(got.String()); err != nil || back != got {
			t.Errorf("%s: round trip %+v %v", tc.in, back, err)
		}
	}
}

func FuzzParseRef(f *testing.F) {
	for _, s := range []string{"oci://localhost:5000/a/b:c", "oci://r/f@sha256:" + strings.Repeat("0", 64), "oci://", "oci://a/b:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRef(s)
		if err != nil {
			return
		}
		if back, err := ParseRef(r.String()); err != nil || back != r {
			t.Fatalf("%q: %+v does not round-trip: %+v %v", s, r, back, err)
		}
	})
}

// Push and pull through a real registry; a tag that moves is followed by
// the watcher, a refused version is not pulled again, a pinned digest
// stays.
func TestRegistryRoundTripAndWatch(t *testing.T) {
	reg := testutil.StartRegistry(t)
	c := Client{PlainHTTP: true}
	ctx := context.Background()
	ref, err := ParseRef("oci://" + reg.Host + "/mdsa/finance:stable")
	if err != nil {
		t.Fatal(err)
	}
	v1 := []byte("\x00asm\x01\x00\x00\x00version one")
	d1, err := c.Push(ctx, ref, "finance", v1, map[string]string{"org.opencontainers.image.version": "1.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.Pull(ctx, ref)
	if err != nil || p.Name != "finance" || !bytes.Equal(p.Wasm, v1) || p.Digest != d1 || p.Annotations["org.opencontainers.image.version"] != "1.0.0" {
		t.Fatalf("pulled %+v %v", p, err)
	}

	var mu sync.Mutex
	var installs []string
	refuse := false
	w := &Watcher{Client: c, Refs: []Ref{ref}, Install: func(_ context.Context, name string, wasm []byte) error {
		mu.Lock()
		defer mu.Unlock()
		installs = append(installs, name+":"+string(wasm[8:]))
		if refuse {
			return errRefused
		}
		return nil
	}}
	if n := w.Sync(ctx); n != 1 {
		t.Fatalf("first sync installed %d", n)
	}
	if n := w.Sync(ctx); n != 0 {
		t.Fatalf("an unchanged tag installed %d", n)
	}
	v2 := []byte("\x00asm\x01\x00\x00\x00version two")
	if _, err := c.Push(ctx, ref, "finance", v2, nil); err != nil {
		t.Fatal(err)
	}
	if n := w.Sync(ctx); n != 1 || installs[len(installs)-1] != "finance:version two" {
		t.Fatalf("the moved tag: %d installs %v", n, installs)
	}
	refuse = true
	if _, err := c.Push(ctx, ref, "finance", []byte("\x00asm\x01\x00\x00\x00bad version"), nil); err != nil {
		t.Fatal(err)
	}
	w.Sync(ctx)
	w.Sync(ctx)
	if got := len(installs); got != 3 {
		t.Errorf("a refused version was tried %d times, want once", got-2)
	}

	// Pinned by digest: version one, whatever the tag says.
	pinned := Ref{Registry: ref.Registry, Repository: ref.Repository, Digest: d1}
	p, err = c.Pull(ctx, pinned)
	if err != nil || !bytes.Equal(p.Wasm, v1) {
		t.Fatalf("pinned: %+v %v", p, err)
	}

	// Not a plugin: an artifact of another type is refused.
	if _, err := c.Pull(ctx, Ref{Registry: reg.Host, Repository: "nothing", Tag: "x"}); err == nil {
		t.Error("pulled a reference that does not exist")
	}
}

var errRefused = errString("refused")

type errString string

func (e errString) Error() string { return string(e) }
