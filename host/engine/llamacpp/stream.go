package llamacpp

import (
	"bytes"
	"strings"
	"unicode/utf8"
)

// streamer turns the raw bytes of generated tokens into text for the caller.
//
// Two things make that more than a concatenation:
//
//   - A token may end in the middle of a multi-byte UTF-8 character (byte
//     fallback tokens such as <0xE2>). Such a trailing partial character is
//     held back until the bytes that complete it arrive.
//   - A stop string may be spread over several tokens. Any suffix of the
//     pending text that is the beginning of a stop string is held back until
//     it either completes the stop string (the text before it is emitted,
//     the stop string never is, and generation ends) or stops matching (it is
//     emitted as ordinary text).
//
// Emitted chunks are converted to valid UTF-8 (invalid bytes become U+FFFD),
// and Text is exactly the concatenation of the emitted chunks.
type streamer struct {
	stops   [][]byte
	pending []byte
	text    strings.Builder
	emit    func(string) error
	stopped bool
}

// newStreamer returns a streamer for the given stop strings; empty stop
// strings are ignored. emit may be nil.
func newStreamer(stops []string, emit func(string) error) *streamer {
	s := &streamer{emit: emit}
	for _, st := range stops {
		if st != "" {
			s.stops = append(s.stops, []byte(st))
		}
	}
	return s
}

// push adds the bytes of one token. It reports whether a stop string has now
// appeared; the text before it has then been emitted and the streamer is done.
func (s *streamer) push(piece []byte) (stopped bool, err error) {
	if s.stopped {
		return true, nil
	}
	s.pending = append(s.pending, piece...)

	// A complete stop string ends generation at its earliest occurrence.
	if cut := s.firstStop(); cut >= 0 {
		s.stopped = true
		err := s.out(s.pending[:cut])
		s.pending = s.pending[:0]
		return true, err
	}

	end := len(s.pending) - s.stopPrefixLen()
	if c := completeLen(s.pending); c < end {
		end = c
	}
	if end <= 0 {
		return false, nil
	}
	err = s.out(s.pending[:end])
	s.pending = append(s.pending[:0], s.pending[end:]...)
	return false, err
}

// flush emits whatever is still held back; call it when generation ends for
// any reason other than a stop string.
func (s *streamer) flush() error {
	if s.stopped || len(s.pending) == 0 {
		return nil
	}
	err := s.out(s.pending)
	s.pending = s.pending[:0]
	return err
}

// Text returns everything emitted so far.
func (s *streamer) Text() string { return s.text.String() }

func (s *streamer) out(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	chunk := strings.ToValidUTF8(string(b), "\uFFFD")
	s.text.WriteString(chunk)
	if s.emit == nil {
		return nil
	}
	return s.emit(chunk)
}

// firstStop returns the index in pending of the earliest complete stop
// string, or -1.
func (s *streamer) firstStop() int {
	best := -1
	for _, st := range s.stops {
		if i := bytes.Index(s.pending, st); i >= 0 && (best < 0 || i < best) {
			best = i
		}
	}
	return best
}

// stopPrefixLen returns the length of the longest suffix of pending that is a
// proper prefix of some stop string.
func (s *streamer) stopPrefixLen() int {
	best := 0
	for _, st := range s.stops {
		n := min(len(st)-1, len(s.pending))
		for k := n; k > best; k-- {
			if bytes.Equal(s.pending[len(s.pending)-k:], st[:k]) {
				best = k
				break
			}
		}
	}
	return best
}

// completeLen returns the length of the longest prefix of b that does not end
// inside a multi-byte UTF-8 character that later bytes could still complete.
// Bytes that can never become valid UTF-8 count as complete (they are
// replaced with U+FFFD on output).
func completeLen(b []byte) int {
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				return i
			}
			return len(b)
		}
	}
	return len(b)
}
