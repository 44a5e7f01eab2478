package enginebench

import (
	"math"
	"time"
)

// ms is d in milliseconds.
func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

// Ratio is a / b, the MDSA figure over the reference's; nil when either is
// missing, b is 0 or the quotient is not finite.
func Ratio(a, b *float64) *float64 {
	if a == nil || b == nil || *b == 0 {
		return nil
	}
	r := *a / *b
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return nil
	}
	return &r
}

// div is a / b, 0 when b is 0.
func div(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// ptr returns a pointer to v.
func ptr(v float64) *float64 { return &v }

// tally gathers the outcomes of a target's requests in one phase or level.
type tally struct {
	ok, errs   int
	firstErr   string
	lat        []time.Duration // of successful requests
	prompt     int64
	cached     int64
	completion int64
	// decode: tokens generated after the first one, and the time they took
	decodeTokens int64
	decodeTime   time.Duration
	firstToken   time.Duration // sum over requests that streamed text
	firstTokenN  int
}

// add records one request.
func (t *tally) add(o Outcome, err error) {
	if err != nil {
		t.errs++
		if t.firstErr == "" {
			t.firstErr = err.Error()
		}
		return
	}
	t.ok++
	t.lat = append(t.lat, o.Latency)
	t.prompt += int64(o.PromptTokens)
	t.cached += int64(o.CachedTokens)
	t.completion += int64(o.CompletionTokens)
	if o.FirstToken > 0 {
		t.firstToken += o.FirstToken
		t.firstTokenN++
		if o.CompletionTokens > 1 && o.Latency > o.FirstToken {
			t.decodeTokens += int64(o.CompletionTokens - 1)
			t.decodeTime += o.Latency - o.FirstToken
		}
	}
}

// merge adds u's records to t.
func (t *tally) merge(u tally) {
	if t.firstErr == "" {
		t.firstErr = u.firstErr
	}
	t.ok += u.ok
	t.errs += u.errs
	t.lat = append(t.lat, u.lat...)
	t.prompt += u.prompt
	t.cached += u.cached
	t.completion += u.completion
	t.decodeTokens += u.decodeTokens
	t.decodeTime += u.decodeTime
	t.firstToken += u.firstToken
	t.firstTokenN += u.firstTokenN
}

func (t *tally) mean(total int64) float64 { return div(float64(total), float64(t.ok)) }

// evaluated is the mean number of prompt tokens evaluated per request.
func (t *tally) evaluated() float64 { return t.mean(t.prompt - t.cached) }
