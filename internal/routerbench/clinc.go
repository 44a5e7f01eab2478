// Package routerbench measures routers: accuracy, out-of-scope detection,
// calibration and latency on CLINC150, and latency at scale on synthetic
// domains. `mdsa bench route` prints its reports.
package routerbench

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/mdsa-go/mdsa/host/router"
)

// Dataset is a routing benchmark: domains to train on, labelled samples to
// tune thresholds on (Val) and to report on (Test). A sample whose Domain
// is "" belongs to no domain.
type Dataset struct {
	Name    string
	Domains []router.Domain
	Val     []router.Sample
	Test    []router.Sample
}

// LoadCLINC reads CLINC150 from dir (data_full.json and domains.json). Each
// of its 10 domains becomes one router domain whose examples are the train
// utterances of its 15 intents; Val is val + oos_val and Test is test +
// oos_test. The out-of-scope train utterances are not used.
func LoadCLINC(dir string) (Dataset, error) {
	var data map[string][][2]string
	if err := readJSON(filepath.Join(dir, "data_full.json"), &data); err != nil {
		return Dataset{}, err
	}
	var domains map[string][]string
	if err := readJSON(filepath.Join(dir, "domains.json"), &domains); err != nil {
		return Dataset{}, err
	}
	intentDomain := map[string]string{}
	for d, intents := range domains {
		for _, in := range intents {
			intentDomain[in] = d
		}
	}
	for _, split := range []string{"train", "val", "test", "oos_val", "oos_test"} {
		if len(data[split]) == 0 {
			return Dataset{}, fmt.Errorf("routerbench: %s has no %q split", filepath.Join(dir, "data_full.json"), split)
		}
	}
	ds := Dataset{Name: "clinc150"}
	byDomain := map[string][]string{}
	for i, p := range data["train"] {
		d, ok := intentDomain[p[1]]
		if !ok {
			return Dataset{}, fmt.Errorf("routerbench: data_full.json train[%d]: intent %q is in no domain of domains.json", i, p[1])
		}
		byDomain[d] = append(byDomain[d], p[0])
	}
	for _, d := range slices.Sorted(maps.Keys(byDomain)) {
		ds.Domains = append(ds.Domains, router.Domain{Name: d, Examples: byDomain[d]})
	}
	samples := func(in, oos string) ([]router.Sample, error) {
		var out []router.Sample
		for i, p := range data[in] {
			d, ok := intentDomain[p[1]]
			if !ok {
				return nil, fmt.Errorf("routerbench: data_full.json %s[%d]: intent %q is in no domain of domains.json", in, i, p[1])
			}
			out = append(out, router.Sample{Query: p[0], Domain: d})
		}
		for _, p := range data[oos] {
			out = append(out, router.Sample{Query: p[0]})
		}
		return out, nil
	}
	var err error
	if ds.Val, err = samples("val", "oos_val"); err != nil {
		return Dataset{}, err
	}
	if ds.Test, err = samples("test", "oos_test"); err != nil {
		return Dataset{}, err
	}
	return ds, nil
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("routerbench: %w", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("routerbench: %s: %w", path, err)
	}
	return nil
}
