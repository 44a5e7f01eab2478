package wire

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/mdsa-go/mdsa/host"
)

func TestFromResultJSON(t *testing.T) {
	res := host.Result{RequestID: "r1", Status: host.StatusFlagged, Domain: "finance",
		Tokens:  host.Tokens{Prompt: 3, Completion: 2},
		Timings: host.Timings{Route: 1500 * time.Microsecond, Generate: 2 * time.Second, Total: 2*time.Second + 1234567*time.Nanosecond}}
	b, err := json.Marshal(FromResult(res))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	tm, _ := got["timings_ms"].(map[string]any)
	if got["status"] != "flagged" || got["request_id"] != "r1" || tm["route"] != 1.5 || tm["generate"] != 2000.0 || tm["total"] != 2001.234 {
		t.Fatalf("wire shape: %s", b)
	}
}

func TestFromReloadJSON(t *testing.T) {
	rep := host.ReloadReport{Took: 12 * time.Millisecond, Changes: []host.Change{{Name: "finance", Action: "swapped",
		Took: 1500 * time.Microsecond, Compile: 250 * time.Microsecond, Tenants: []string{"acme"}}}}
	b, err := json.Marshal(FromReload(rep))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"changes":[{"name":"finance","path":"","action":"swapped","ms":1.5,"compile_ms":0.25,"tenants":["acme"]}],"refused":[],"took_ms":12}`
	if string(b) != want {
		t.Fatalf("reload report\n got %s\nwant %s", b, want)
	}
}
