package clusterbench

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/mdsa-go/mdsa/host/config"
	"github.com/mdsa-go/mdsa/internal/testutil"
)

// A short run: every phase measures something, prefix affinity keeps
// prompts warmer than least-outstanding, and a killed backend costs no
// request that had not started streaming; its streams in flight end with
// an error event; it is ejected and comes back.
func TestRun(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for about 15 s")
	}
	cfg := config.Default()
	cfg.SetDir(t.TempDir())
	rep, err := Run(context.Background(), Options{Duration: 500 * time.Millisecond, Requests: 20, Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", rep)
	if rep.Overhead.DirectP50MS <= 0 || rep.Overhead.GatewayP50MS <= 0 || rep.Overhead.GatewayTTFTMS <= 0 {
		t.Errorf("overhead: %+v", rep.Overhead)
	}
	if len(rep.Affinity) != 2 || rep.Affinity[1].Balance != "prefix" || rep.Affinity[1].WarmPct < 80 ||
		rep.Affinity[1].WarmPct <= rep.Affinity[0].WarmPct {
		t.Errorf("affinity: %+v", rep.Affinity)
	}
	if len(rep.Scaling) != 3 || rep.Scaling[2].RequestsPerS <= rep.Scaling[0].RequestsPerS {
		t.Errorf("scaling: %+v", rep.Scaling)
	}
	fo := rep.Failover
	if fo.Requests == 0 || fo.FailedBeforeFirstToken != 0 || fo.CutWithoutError != 0 || fo.EjectedAfterMS < 0 || fo.ServedAfterMS < 0 {
		t.Errorf("failover: %+v", fo)
	}
}

// Two replicas on one Redis admit one tenant's 20 requests per second
// between them, not each.
func TestSharedLimitsPhase(t *testing.T) {
	r := testutil.StartRedis(t)
	cfg := config.Default()
	cfg.SetDir(t.TempDir())
	sh, err := sharedLimits(context.Background(), Options{Duration: 2 * time.Second, Config: cfg, RedisURL: r.URL}, &http.Client{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", sh)
	if sh.Errors != 0 || sh.AdmittedPerS > 20*1.25 || sh.AdmittedPerS < 20*0.6 || sh.Refused == 0 {
		t.Errorf("%+v", sh)
	}
}
