package llamacpp

import (
	"context"
	"fmt"
	"time"

	"github.com/mdsa-go/mdsa/host/engine"
)

// Throughput is the timing of one generation, as measured by Measure.
type Throughput struct {
	TokensIn        int           `json:"tokens_in"`
	TokensOut       int           `json:"tokens_out"`
	FirstToken      time.Duration `json:"first_token"` // until the first streamed piece (prompt processing + 1 token)
	Total           time.Duration `json:"total"`
	TokensPerSecond float64       `json:"tokens_per_second"` // generated tokens after the first, per second of decode time
}

// Measure runs one generation of req on eng and reports its speed. Tokens
// per second counts the tokens generated after the first streamed piece over
// the time since it, so prompt processing is left out; when nothing was
// streamed it falls back to all generated tokens over the total time. It
// works with any engine.Engine.
func Measure(ctx context.Context, eng engine.Engine, req engine.Request) (Throughput, error) {
	start := time.Now()
	var first time.Time
	res, err := eng.Generate(ctx, req, func(string) error {
		if first.IsZero() {
			first = time.Now()
		}
		return nil
	})
	end := time.Now()
	t := Throughput{TokensIn: res.TokensIn, TokensOut: res.TokensOut, Total: end.Sub(start)}
	if err != nil {
		return t, fmt.Errorf("llamacpp: measuring %s: %w", eng.Model(), err)
	}
	if !first.IsZero() {
		t.FirstToken = first.Sub(start)
	}
	switch decode := end.Sub(first); {
	case !first.IsZero() && res.TokensOut > 1 && decode > 0:
		t.TokensPerSecond = float64(res.TokensOut-1) / decode.Seconds()
	case t.Total > 0:
		t.TokensPerSecond = float64(res.TokensOut) / t.Total.Seconds()
	}
	return t, nil
}
