package routerbench

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/mdsa-go/mdsa/host/router"
)

// Config sets up a benchmark run.
type Config struct {
	// MinAccuracy is the in-scope accuracy on Val that the out-of-scope
	// threshold must keep (default 0.95): the threshold is the one with
	// the best out-of-scope recall on Val that keeps it.
	MinAccuracy float64
	// Background is passed to the router (nil: none).
	Background []string
	// CalibrateOnVal refits the confidence on Val before tuning the
	// threshold, instead of keeping the router's own held-out calibration.
	CalibrateOnVal bool
}

// Report is what a run measured on the test split.
type Report struct {
	Dataset    string `json:"dataset"`
	Domains    int    `json:"domains"`
	Examples   int    `json:"train_examples"`
	Background int    `json:"background_examples"`
	Features   int    `json:"features"`
	Model      string `json:"model"`
	// Calibration is "held-out" (the router's own) or "samples" (Val).
	Calibration string `json:"calibration"`
	// TrainMS is the time New took, calibration included.
	TrainMS float64 `json:"train_ms"`
	// Threshold is the confidence threshold tuned on Val.
	Threshold float64 `json:"threshold"`
	// ValInScopeAccuracy and ValOOSRecall are at Threshold on Val.
	ValInScopeAccuracy float64 `json:"val_in_scope_accuracy"`
	ValOOSRecall       float64 `json:"val_oos_recall"`
	// ClosedSetAccuracy: in-scope test queries routed to their domain
	// when nothing is refused (threshold 0).
	ClosedSetAccuracy float64 `json:"closed_set_accuracy"`
	// InScopeAccuracy: in-scope test queries routed to their domain and
	// not refused, at Threshold.
	InScopeAccuracy float64 `json:"in_scope_accuracy"`
	// OOSRecall: out-of-scope test queries refused; OOSPrecision: refused
	// test queries that were out of scope.
	OOSRecall    float64 `json:"oos_recall"`
	OOSPrecision float64 `json:"oos_precision"`
	// MacroF1 averages F1 over the domains and the out-of-scope class.
	MacroF1 float64 `json:"macro_f1"`
	// ECE is the expected calibration error of the confidence on the test
	// split (10 bins): how far it is from the observed accuracy.
	ECE         float64 `json:"ece"`
	TestQueries int     `json:"test_queries"`
	P50US       float64 `json:"p50_us"`
	P99US       float64 `json:"p99_us"`
	MeanUS      float64 `json:"mean_us"`
}

// Run trains a router on ds.Domains, tunes the out-of-scope threshold on
// ds.Val and measures on ds.Test.
func Run(ctx context.Context, ds Dataset, cfg Config) (Report, error) {
	if cfg.MinAccuracy == 0 {
		cfg.MinAccuracy = 0.95
	}
	if len(ds.Test) == 0 {
		return Report{}, fmt.Errorf("routerbench: %s has no test samples", ds.Name)
	}
	start := time.Now()
	r, err := router.New(ctx, ds.Domains, router.Options{Background: cfg.Background})
	if err != nil {
		return Report{}, err
	}
	rep := Report{Dataset: ds.Name, TrainMS: ms(time.Since(start))}
	if cfg.CalibrateOnVal {
		if r, err = r.Calibrate(ctx, ds.Val); err != nil {
			return Report{}, err
		}
	}
	info := r.Info()
	rep.Domains, rep.Examples, rep.Background, rep.Features, rep.Model, rep.Calibration =
		info.Domains, info.Examples, info.Background, info.Features, info.Model, info.Calibration

	if len(ds.Val) > 0 {
		val := route(ctx, r, ds.Val, nil)
		rep.Threshold = tune(ds.Val, val, cfg.MinAccuracy)
		m := score(ds.Val, val, rep.Threshold, r.Domains())
		rep.ValInScopeAccuracy, rep.ValOOSRecall = m.inScopeAcc, m.oosRecall
	}
	lat := make([]time.Duration, 0, len(ds.Test))
	test := route(ctx, r, ds.Test, &lat)
	rep.ClosedSetAccuracy = score(ds.Test, test, 0, r.Domains()).inScopeAcc
	m := score(ds.Test, test, rep.Threshold, r.Domains())
	rep.InScopeAccuracy, rep.OOSRecall, rep.OOSPrecision, rep.MacroF1 = m.inScopeAcc, m.oosRecall, m.oosPrecision, m.macroF1
	rep.ECE = ece(ds.Test, test)
	rep.TestQueries = len(ds.Test)
	rep.P50US, rep.P99US, rep.MeanUS = latency(lat)
	return rep, nil
}

// route routes every sample; with lat set it records each Route's time.
func route(ctx context.Context, r router.Router, set []router.Sample, lat *[]time.Duration) []router.Decision {
	out := make([]router.Decision, len(set))
	for i, s := range set {
		t := time.Now()
		out[i] = r.Route(ctx, s.Query)
		if lat != nil {
			*lat = append(*lat, time.Since(t))
		}
	}
	return out
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1e3 }

func latency(lat []time.Duration) (p50, p99, mean float64) {
	if len(lat) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
	return us(s[len(s)/2]), us(s[min(len(s)-1, len(s)*99/100)]), us(sum / time.Duration(len(s)))
}

// predicted is where a decision sends a query at threshold th ("" = refused).
func predicted(d router.Decision, th float64) string {
	if len(d.Alternatives) == 0 || d.Confidence < th || d.Confidence == 0 {
		return ""
	}
	return d.Alternatives[0].Domain
}

type metrics struct {
	inScopeAcc, oosRecall, oosPrecision, macroF1 float64
}

func score(set []router.Sample, dec []router.Decision, th float64, domains []string) metrics {
	tp := map[string]int{}
	fp := map[string]int{}
	fn := map[string]int{}
	var in, inOK, oos, oosOK, refused int
	for i, s := range set {
		p := predicted(dec[i], th)
		if p == "" {
			refused++
		}
		if s.Domain == "" {
			oos++
			if p == "" {
				oosOK++
			}
		} else {
			in++
			if p == s.Domain {
				inOK++
			}
		}
		if p == s.Domain {
			tp[p]++
		} else {
			fp[p]++
			fn[s.Domain]++
		}
	}
	var m metrics
	m.inScopeAcc = ratio(inOK, in)
	m.oosRecall = ratio(oosOK, oos)
	m.oosPrecision = ratio(oosOK, refused)
	classes := append(slices.Clone(domains), "")
	for _, c := range classes {
		p, r := ratio(tp[c], tp[c]+fp[c]), ratio(tp[c], tp[c]+fn[c])
		if p+r > 0 {
			m.macroF1 += 2 * p * r / (p + r)
		}
	}
	m.macroF1 /= float64(len(classes))
	return m
}

func ratio(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// tune returns the threshold with the best out-of-scope recall on the
// samples that keeps in-scope accuracy at least minAcc (0 if none does).
// Raising the threshold past a sample's confidence refuses it, so one sweep
// over the samples sorted by confidence sees every operating point.
func tune(set []router.Sample, dec []router.Decision, minAcc float64) float64 {
	type point struct {
		conf    float64
		in, hit bool
	}
	pts := make([]point, len(set))
	var in, inOK, oos int
	for i, s := range set {
		hit := len(dec[i].Alternatives) > 0 && dec[i].Alternatives[0].Domain == s.Domain && dec[i].Confidence > 0
		pts[i] = point{dec[i].Confidence, s.Domain != "", hit}
		if s.Domain != "" {
			in++
			if hit {
				inOK++
			}
		} else {
			oos++
		}
	}
	slices.SortFunc(pts, func(a, b point) int { return cmp.Compare(a.conf, b.conf) })
	best, bestRecall := 0.0, -1.0
	oosOK := 0
	for i := 0; i <= len(pts); {
		th := math.Inf(1)
		if i < len(pts) {
			th = pts[i].conf
		}
		// At threshold th, pts[:i] are refused.
		if ratio(inOK, in) < minAcc || math.IsInf(th, 1) {
			break
		}
		if r := ratio(oosOK, oos); r > bestRecall {
			best, bestRecall = th, r
		}
		for j := i; j < len(pts) && pts[j].conf == th; j++ {
			if pts[j].in && pts[j].hit {
				inOK--
			}
			if !pts[j].in {
				oosOK++
			}
			i = j + 1
		}
	}
	return best
}

// ece is the expected calibration error over 10 equal-width bins: the
// confidence of the best candidate against whether it was the right
// domain (out-of-scope queries never are).
func ece(set []router.Sample, dec []router.Decision) float64 {
	var conf, right [10]float64
	var n [10]int
	for i, s := range set {
		if len(dec[i].Alternatives) == 0 {
			continue
		}
		c := dec[i].Confidence
		b := min(9, int(c*10))
		n[b]++
		conf[b] += c
		if dec[i].Alternatives[0].Domain == s.Domain {
			right[b]++
		}
	}
	var e float64
	for b := range n {
		e += math.Abs(conf[b] - right[b])
	}
	return e / float64(len(set))
}
