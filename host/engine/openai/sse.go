package openai

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// maxEventBytes bounds one server-sent event (all its data lines): a
// backend that streams an endless line cannot make the gateway buffer it.
const maxEventBytes = 4 << 20

// errEventTooLarge is returned by sseReader.next for an event past
// maxEventBytes.
var errEventTooLarge = fmt.Errorf("openai: a stream event is longer than %d bytes", maxEventBytes)

// sseReader reads the data of server-sent events
// (https://html.spec.whatwg.org/multipage/server-sent-events.html): lines
// ending in LF, CRLF or CR; "data:" lines joined by LF into one event,
// which a blank line ends; comments (":") and other fields ignored.
type sseReader struct {
	r    *bufio.Reader
	data []byte
	line []byte
}

func newSSEReader(r io.Reader) *sseReader {
	return &sseReader{r: bufio.NewReaderSize(r, 32<<10)}
}

// next returns the data of the next event that has data; io.EOF at the end
// of the stream (an event cut off by the end is returned first, as
// browsers do not; backends that omit the last blank line exist). The
// slice is valid until the following call.
func (s *sseReader) next() ([]byte, error) {
	s.data = s.data[:0]
	hasData := false
	for {
		line, err := s.readLine()
		if err != nil {
			if errors.Is(err, io.EOF) && hasData {
				return s.data, nil
			}
			return nil, err
		}
		if len(line) == 0 {
			if hasData {
				return s.data, nil
			}
			continue
		}
		if line[0] == ':' {
			continue // a comment, such as a keep-alive
		}
		field, value, found := bytes.Cut(line, []byte{':'})
		if !found {
			continue // a field name alone: only "data" would matter, with no value
		}
		if string(field) != "data" {
			continue // event, id, retry: not used by completion streams
		}
		value = bytes.TrimPrefix(value, []byte{' '})
		if hasData {
			s.data = append(s.data, '\n')
		}
		if len(s.data)+len(value) > maxEventBytes {
			return nil, errEventTooLarge
		}
		s.data = append(s.data, value...)
		hasData = true
	}
}

// readLine returns the next line without its end (LF, CRLF or CR).
func (s *sseReader) readLine() ([]byte, error) {
	s.line = s.line[:0]
	for {
		b, err := s.r.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) && len(s.line) > 0 {
				return s.line, nil
			}
			return nil, err
		}
		switch b {
		case '\n':
			return s.line, nil
		case '\r':
			if nb, err := s.r.Peek(1); err == nil && nb[0] == '\n' {
				_, _ = s.r.ReadByte()
			}
			return s.line, nil
		}
		if len(s.line) >= maxEventBytes {
			return nil, errEventTooLarge
		}
		s.line = append(s.line, b)
	}
}
