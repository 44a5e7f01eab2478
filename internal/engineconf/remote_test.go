package engineconf

import (
	"strings"
	"testing"

	"github.com/mdsa-go/mdsa/host/config"
)

// Keys come from the group's variable, or one per URL; a named variable
// that is unset is an error, not a request without a key.
func TestRemoteKeys(t *testing.T) {
	cfg := config.Default()
	cfg.Backends = map[string]config.Backend{"gpu": {Kind: "vllm", URLs: []string{"http://a:1", "http://b:1"},
		APIKeyEnv: "MDSA_TEST_GROUP_KEY", APIKeyEnvs: []string{"", "MDSA_TEST_B_KEY"}, Balance: "prefix"}}
	cfg.Models = map[string]config.Model{"r": {Tier: "domain", Backend: "gpu", RemoteModel: "Qwen/Q"}}
	t.Setenv("MDSA_TEST_GROUP_KEY", "group")
	if _, err := Remote(cfg, "r", nil); err == nil || !strings.Contains(err.Error(), "MDSA_TEST_B_KEY") {
		t.Fatalf("an unset per-url variable: %v", err)
	}
	t.Setenv("MDSA_TEST_B_KEY", "b-only")
	o, err := Remote(cfg, "r", nil)
	if err != nil {
		t.Fatal(err)
	}
	if o.Backends[0].APIKey != "group" || o.Backends[1].APIKey != "b-only" || o.Model != "Qwen/Q" || o.Kind != "vllm" || o.Balance != "prefix" {
		t.Errorf("%+v", o)
	}
	if _, err := Remote(cfg, "nope", nil); err == nil {
		t.Error("a model not in the catalog")
	}
}
