package hardware

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/jaypipes/ghw"
)

// ghwArgs are the arguments every ghw call gets: the root to read, a logger
// that turns ghw's warnings into Info.Warnings instead of printing them on
// stderr, and no external tools (CPU, memory and topology need none).
func ghwArgs(opts Options, sink *ghwSink) []any {
	return []any{
		ghw.WithChroot(opts.root()),
		ghw.WithLogger(slog.New(sink)),
		ghw.WithDisableTools(),
	}
}

// ghwCall runs fn, turning a panic inside ghw (it indexes into sysfs file
// names and contents without always checking them) into an error, so that a
// strange sysfs degrades detection instead of crashing the host.
func ghwCall[T any](what string, fn func() (T, error)) (v T, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("ghw %s panicked: %v", what, r)
		}
	}()
	v, err = fn()
	if err != nil {
		err = fmt.Errorf("ghw %s: %w", what, err)
	}
	return v, err
}

// ghwSink is a slog.Handler that keeps ghw's warnings.
type ghwSink struct {
	mu   sync.Mutex
	msgs []string
}

// Enabled implements slog.Handler: warnings and errors only.
func (s *ghwSink) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }

// Handle implements slog.Handler.
func (s *ghwSink) Handle(_ context.Context, r slog.Record) error {
	msg := strings.TrimSpace(r.Message)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.msgs {
		if m == msg {
			return nil
		}
	}
	s.msgs = append(s.msgs, msg)
	return nil
}

// WithAttrs implements slog.Handler (ghw sets no attributes).
func (s *ghwSink) WithAttrs([]slog.Attr) slog.Handler { return s }

// WithGroup implements slog.Handler.
func (s *ghwSink) WithGroup(string) slog.Handler { return s }

// flush moves the collected messages to w, prefixed with "ghw: ".
func (s *ghwSink) flush(w *warnings) {
	s.mu.Lock()
	msgs := s.msgs
	s.msgs = nil
	s.mu.Unlock()
	for _, m := range msgs {
		w.add("ghw: " + m)
	}
}
