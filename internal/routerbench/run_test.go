package routerbench

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/mdsa-go/mdsa/host/router"
	"github.com/mdsa-go/mdsa/internal/testutil"
)

func TestTuneKeepsAccuracy(t *testing.T) {
	s := func(q, d string) router.Sample { return router.Sample{Query: q, Domain: d} }
	set := []router.Sample{s("a", "x"), s("b", "x"), s("c", "x"), s("d", "x"), s("o1", ""), s("o2", "")}
	dec := func(d string, c float64) router.Decision {
		return router.Decision{Confidence: c, Alternatives: []router.Scored{{Domain: d, Score: c}}}
	}
	decs := []router.Decision{dec("x", 0.9), dec("x", 0.8), dec("x", 0.4), dec("y", 0.2), dec("x", 0.3), dec("x", 0.1)}
	// Accuracy 3/4 at threshold 0; refusing below 0.4 keeps 3/4 and refuses both oos.
	if th := tune(set, decs, 0.75); th != 0.4 {
		t.Fatalf("threshold %v, want 0.4", th)
	}
	if th := tune(set, decs, 0.8); th != 0 {
		t.Fatalf("threshold %v, want 0 when no threshold keeps the accuracy", th)
	}
	m := score(set, decs, 0.4, []string{"x", "y"})
	if m.inScopeAcc != 0.75 || m.oosRecall != 1 || m.oosPrecision != 2.0/3 {
		t.Fatalf("metrics %+v", m)
	}
}

func TestLoadCLINCErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadCLINC(dir); err == nil {
		t.Fatal("missing files accepted")
	}
	os.WriteFile(filepath.Join(dir, "data_full.json"), []byte(`{"train": [["hi", "greet"]]`), 0o644)
	os.WriteFile(filepath.Join(dir, "domains.json"), []byte(`{"talk": ["greet"]}`), 0o644)
	if _, err := LoadCLINC(dir); err == nil {
		t.Fatal("truncated JSON accepted")
	}
	os.WriteFile(filepath.Join(dir, "data_full.json"), []byte(`{"train": [["hi", "nope"]], "val": [["a","greet"]], "test": [["a","greet"]], "oos_val": [["b","oos"]], "oos_test": [["b","oos"]]}`), 0o644)
	if _, err := LoadCLINC(dir); err == nil {
		t.Fatal("unknown intent accepted")
	}
}

// TestCLINC150 runs the real benchmark when the dataset is present.
func TestCLINC150(t *testing.T) {
	dir := os.Getenv("MDSA_CLINC150")
	if dir == "" {
		root, err := testutil.ModuleRoot()
		if err != nil {
			t.Fatal(err)
		}
		// Beside the checkout, else where this project's machines keep
		// the shared datasets (a CI checkout may live anywhere).
		dir = filepath.Join(root, "..", "shared", "datasets", "clinc150")
		if _, err := os.Stat(dir); err != nil {
			dir = "/work/shared/datasets/clinc150"
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "data_full.json")); err != nil {
		t.Skip("CLINC150 not found at", dir)
	}
	if testing.Short() || raceOn {
		t.Skip("a quality test: runs without -short and -race (make test)")
	}
	ds, err := LoadCLINC(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds.Domains) != 10 || len(ds.Test) != 5500 || len(ds.Val) != 3100 {
		t.Fatalf("dataset shape: %d domains, %d val, %d test", len(ds.Domains), len(ds.Val), len(ds.Test))
	}
	rep, err := Run(context.Background(), ds, Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", rep)
	// Regression floors well under the measured figures (see README).
	if rep.ClosedSetAccuracy < 0.95 || rep.OOSRecall < 0.5 || rep.InScopeAccuracy < 0.93 {
		t.Fatalf("routing quality regressed: %+v", rep)
	}
}

func TestSyntheticScale(t *testing.T) {
	n := 1000
	if testing.Short() || raceOn {
		n = 100
	}
	ds := Synthetic(n, 10, 1)
	if len(ds.Domains) != n || ds.Domains[0].Examples[0] != Synthetic(n, 10, 1).Domains[0].Examples[0] {
		t.Fatal("synthetic dataset is not deterministic")
	}
	rep, err := Run(context.Background(), ds, Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", rep)
	if rep.ClosedSetAccuracy < 0.75 {
		t.Fatalf("synthetic domains misrouted: %+v", rep)
	}
}
