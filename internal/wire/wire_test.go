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
