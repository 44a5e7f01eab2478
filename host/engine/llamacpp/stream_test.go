package llamacpp

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// feed pushes pieces through a streamer and returns the streamed chunks, the
// final text and whether a stop string ended it.
func feed(t testing.TB, stops []string, pieces []string) (chunks []string, text string, stopped bool) {
	t.Helper()
	s := newStreamer(stops, func(c string) error {
		chunks = append(chunks, c)
		return nil
	})
	for _, p := range pieces {
		st, err := s.push([]byte(p))
		if err != nil {
			t.Fatalf("push: %v", err)
		}
		if st {
			stopped = true
			break
		}
	}
	if !stopped {
		if err := s.flush(); err != nil {
			t.Fatalf("flush: %v", err)
		}
	}
	return chunks, s.Text(), stopped
}

func TestStreamerStopAcrossPieces(t *testing.T) {
	chunks, text, stopped := feed(t, []string{"END"}, []string{"hello E", "N", "D world"})
	if !stopped || text != "hello " {
		t.Fatalf("text %q stopped %v, want %q true", text, stopped, "hello ")
	}
	if got := strings.Join(chunks, ""); got != text {
		t.Fatalf("streamed %q, text %q", got, text)
	}
	// "E" must not have been streamed before the stop string completed.
	for _, c := range chunks {
		if strings.Contains(c, "E") {
			t.Fatalf("chunk %q leaks the stop string", c)
		}
	}
}

func TestStreamerFalseStartIsEmitted(t *testing.T) {
	chunks, text, stopped := feed(t, []string{"END"}, []string{"a E", "N", "x", " b"})
	if stopped || text != "a ENx b" {
		t.Fatalf("text %q stopped %v", text, stopped)
	}
	if strings.Join(chunks, "") != text {
		t.Fatalf("chunks %q", chunks)
	}
	// The held "EN" is released as soon as it stops matching.
	if len(chunks) < 2 || chunks[0] != "a " {
		t.Fatalf("chunks %q, want the text before the candidate first", chunks)
	}
}

func TestStreamerStopAtStart(t *testing.T) {
	chunks, text, stopped := feed(t, []string{"\n\n"}, []string{"\n", "\nrest"})
	if !stopped || text != "" || len(chunks) != 0 {
		t.Fatalf("text %q chunks %q stopped %v", text, chunks, stopped)
	}
}

func TestStreamerEarliestOfSeveralStops(t *testing.T) {
	_, text, stopped := feed(t, []string{"zzz", "b"}, []string{"aaa", "bzzz"})
	if !stopped || text != "aaa" {
		t.Fatalf("text %q stopped %v", text, stopped)
	}
}

func TestStreamerSplitUTF8(t *testing.T) {
	// "é" is C3 A9 and "€" is E2 82 AC; split them across pieces.
	pieces := []string{"caf\xc3", "\xa9 ", "\xe2", "\x82", "\xac!"}
	chunks, text, _ := feed(t, nil, pieces)
	if text != "café €!" {
		t.Fatalf("text %q", text)
	}
	for _, c := range chunks {
		if !utf8.ValidString(c) {
			t.Fatalf("chunk %q is not valid UTF-8", c)
		}
	}
	if len(chunks) != 3 || chunks[0] != "caf" {
		t.Fatalf("chunks %q, want the incomplete characters held back", chunks)
	}
}

func TestStreamerInvalidBytesReplaced(t *testing.T) {
	chunks, text, _ := feed(t, nil, []string{"a\xff", "b", "\xc3"})
	if text != "a\uFFFDb\uFFFD" || strings.Join(chunks, "") != text {
		t.Fatalf("text %q chunks %q", text, chunks)
	}
}

func TestStreamerCallbackError(t *testing.T) {
	boom := errors.New("boom")
	s := newStreamer(nil, func(string) error { return boom })
	if _, err := s.push([]byte("x")); !errors.Is(err, boom) {
		t.Fatalf("err %v, want boom", err)
	}
}

func TestCompleteLen(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
	}{
		{"", 0}, {"abc", 3}, {"a\xc3", 1}, {"a\xe2\x82", 1}, {"a\xf0\x9f\x98", 1},
		{"a\xf0\x9f\x98\x80", 5}, {"\x80\x80", 2}, {"a\xff", 2},
	} {
		if got := completeLen([]byte(tc.in)); got != tc.want {
			t.Errorf("completeLen(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

// FuzzStreamer checks the streamer's contract on arbitrary text, split
// points and stop strings: the streamed chunks equal Text, Text is a prefix
// of the input with no stop string in it, a stop ends exactly at the start of
// a stop-string occurrence, and without a stop everything is returned.
func FuzzStreamer(f *testing.F) {
	f.Add("hello END world", "END", "", uint64(0x123456789))
	f.Add("café € 😀 done", "€ 😀", "zz", uint64(7))
	f.Add("aaaa", "aa", "a", uint64(1))
	f.Add("no stop here", "", "", uint64(99))
	f.Add("x<|im_end|>y", "<|im_end|>", "<|", uint64(3))
	f.Fuzz(func(t *testing.T, text, stop1, stop2 string, splits uint64) {
		if !utf8.ValidString(text) || !utf8.ValidString(stop1) || !utf8.ValidString(stop2) {
			return
		}
		var pieces []string
		rest := text
		for r := splits; len(rest) > 0; r = r>>3 | r<<61 {
			n := int(r%5) + 1
			n = min(n, len(rest))
			pieces = append(pieces, rest[:n])
			rest = rest[n:]
		}
		stops := []string{stop1, stop2}
		chunks, got, stopped := feed(t, stops, pieces)
		if strings.Join(chunks, "") != got {
			t.Fatalf("chunks %q != text %q", chunks, got)
		}
		for _, c := range chunks {
			if !utf8.ValidString(c) {
				t.Fatalf("chunk %q invalid UTF-8", c)
			}
		}
		if !strings.HasPrefix(text, got) {
			t.Fatalf("text %q is not a prefix of %q", got, text)
		}
		for _, st := range stops {
			if st != "" && strings.Contains(got, st) {
				t.Fatalf("result %q contains stop %q", got, st)
			}
		}
		if !stopped {
			if got != text {
				t.Fatalf("no stop but %q != %q", got, text)
			}
			return
		}
		after := text[len(got):]
		ok := false
		for _, st := range stops {
			if st != "" && strings.HasPrefix(after, st) {
				ok = true
			}
		}
		if !ok {
			t.Fatalf("stopped at %q, which does not start a stop string (stops %q)", after, stops)
		}
	})
}
