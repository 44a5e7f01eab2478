package enginebench

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/mdsa-go/mdsa/host/engine"
)

// Call is one chat request the benchmark sends to a target.
type Call struct {
	Messages  []engine.Message
	MaxTokens int
	// Stream asks the target to report when the first token arrived
	// (Outcome.FirstToken).
	Stream bool
	// IgnoreEOS asks the target to keep generating past an
	// end-of-generation token, up to MaxTokens. Targets that cannot do
	// that ignore it; the report shows the tokens each side produced.
	IgnoreEOS bool
}

// Outcome is what one successful Call produced.
type Outcome struct {
	// PromptTokens is the length of the prompt; CachedTokens of them were
	// reused from the target's prefix cache rather than evaluated.
	PromptTokens, CachedTokens int
	// CompletionTokens is how many tokens were generated.
	CompletionTokens int
	// Latency is the time from sending the request to the end of the answer.
	Latency time.Duration
	// FirstToken is the time from sending the request to the first
	// generated text; 0 when the call did not stream or produced no text.
	FirstToken time.Duration
}

// Evaluated is the number of prompt tokens the target evaluated.
func (o Outcome) Evaluated() int { return o.PromptTokens - o.CachedTokens }

// Target is one system under test.
type Target interface {
	// Name identifies the target in messages, e.g. "mdsa engine" or
	// "reference http://127.0.0.1:8089".
	Name() string
	// Do runs one call. It honours ctx.
	Do(ctx context.Context, c Call) (Outcome, error)
	// CPUTime returns the CPU time (user + system) the serving process has
	// used so far. An error means CPU time is not available for this target.
	CPUTime() (time.Duration, error)
}

// EngineTarget measures an engine.Engine running in this process. Its CPU
// time is this process's (the benchmark's own goroutines included, which
// are small next to inference).
type EngineTarget struct {
	Engine engine.Engine
	// Timeout bounds one call (0: DefaultRequestTimeout).
	Timeout time.Duration
}

// Name implements Target.
func (t EngineTarget) Name() string { return "mdsa engine" }

// Do implements Target: greedy generation of c.Messages, past
// end-of-generation tokens when c.IgnoreEOS.
func (t EngineTarget) Do(ctx context.Context, c Call) (Outcome, error) {
	if t.Engine == nil {
		return Outcome{}, errors.New("enginebench: EngineTarget has no engine")
	}
	timeout := t.Timeout
	if timeout <= 0 {
		timeout = DefaultRequestTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	// The engine may call onToken from another goroutine.
	var first atomic.Int64
	var onToken engine.TokenFunc
	if c.Stream {
		onToken = func(piece string) error {
			if piece != "" {
				first.CompareAndSwap(0, int64(max(time.Since(start), 1)))
			}
			return nil
		}
	}
	res, err := t.Engine.Generate(ctx, engine.Request{
		Messages: c.Messages,
		Params:   engine.Params{MaxTokens: c.MaxTokens, Temperature: 0, IgnoreEOS: c.IgnoreEOS},
	}, onToken)
	if err != nil {
		return Outcome{}, fmt.Errorf("%s: generating: %w", t.Name(), err)
	}
	return Outcome{
		PromptTokens:     res.TokensIn,
		CachedTokens:     res.TokensCached,
		CompletionTokens: res.TokensOut,
		Latency:          time.Since(start),
		FirstToken:       time.Duration(first.Load()),
	}, nil
}

// CPUTime implements Target with this process's CPU time.
func (t EngineTarget) CPUTime() (time.Duration, error) { return selfCPU() }
