package openai

import (
	"errors"
	"io"
	"strings"
	"testing"
)

func readAll(t testing.TB, in string) ([]string, error) {
	t.Helper()
	r := newSSEReader(strings.NewReader(in))
	var out []string
	for {
		d, err := r.next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return out, err
		}
		out = append(out, string(d))
	}
}

func TestSSEReader(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []string
	}{
		{"lf", "data: a\n\ndata: b\n\n", []string{"a", "b"}},
		{"crlf", "data: a\r\n\r\ndata: b\r\n\r\n", []string{"a", "b"}},
		{"cr", "data: a\r\rdata: b\r\r", []string{"a", "b"}},
		{"multiline", "data: a\ndata: b\n\n", []string{"a\nb"}},
		{"no space", "data:a\n\n", []string{"a"}},
		{"comments and fields", ": keep-alive\nevent: x\nid: 3\nretry: 10\ndata: a\n\n", []string{"a"}},
		{"blank lines", "\n\n\ndata: a\n\n\n", []string{"a"}},
		{"no final blank line", "data: a\n\ndata: [DONE]", []string{"a", "[DONE]"}},
		{"empty data", "data:\n\n", []string{""}},
		{"event without data", "event: ping\n\ndata: a\n\n", []string{"a"}},
		{"colon in value", `data: {"a":"b:c"}` + "\n\n", []string{`{"a":"b:c"}`}},
	} {
		got, err := readAll(t, tc.in)
		if err != nil || strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("%s: got %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
}

func TestSSEReaderBounds(t *testing.T) {
	if _, err := readAll(t, "data: "+strings.Repeat("x", maxEventBytes+1)+"\n\n"); !errors.Is(err, errEventTooLarge) {
		t.Errorf("an endless line: %v", err)
	}
	many := strings.Repeat("data: "+strings.Repeat("x", 1<<20)+"\n", 5) + "\n"
	if _, err := readAll(t, many); !errors.Is(err, errEventTooLarge) {
		t.Errorf("an event of many lines: %v", err)
	}
}

// FuzzSSEReader: any byte stream ends in events, EOF or a bounded error,
// never a panic or an event past the bound.
func FuzzSSEReader(f *testing.F) {
	for _, s := range []string{"data: a\n\n", "data: a\r\ndata: b\r\r", ": c\nevent: e\n\ndata", "data: [DONE]\n\n", "\r\r\n\n:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		r := newSSEReader(strings.NewReader(in))
		for range len(in) + 2 {
			d, err := r.next()
			if err != nil {
				return
			}
			if len(d) > maxEventBytes || len(d) > len(in) {
				t.Fatalf("event of %d bytes from %d", len(d), len(in))
			}
		}
		t.Fatalf("more events than bytes in %q", in)
	})
}
