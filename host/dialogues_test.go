package host

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/mdsa-go/mdsa/host/router"
)

// Conversation-aware routing measured on dialogues written for it
// (testdata/dialogues_*.json: two- and three-turn conversations over the
// four shipped domains whose later turns are ambiguous alone, or clearly
// switch domain). The switch confidence was chosen on the dev set; the test
// set is only ever measured.

type dialogue struct {
	ID    string `json:"id"`
	Turns []struct {
		User   string `json:"user"`
		Domain string `json:"domain"`
	} `json:"turns"`
}

func loadDialogues(t *testing.T, name string) []dialogue {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var ds []dialogue
	if err := json.Unmarshal(data, &ds); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return ds
}

// dialogueScore counts the later turns routed right: alone, and with
// their conversation at switch sw; follow-ups (same domain as the turn
// before) and switches separately.
type dialogueScore struct {
	followUps, switches      int
	aloneFollow, aloneSwitch int
	awareFollow, awareSwitch int
}

func (s dialogueScore) pct(n, of int) float64 { return 100 * float64(n) / float64(max(of, 1)) }

func scoreDialogues(t *testing.T, h *Host, ds []dialogue, sw float64) dialogueScore {
	t.Helper()
	st, err := h.state.Load().space("")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var s dialogueScore
	for _, d := range ds {
		var history []string
		for i, turn := range d.Turns {
			if i > 0 {
				alone := st.router.Route(ctx, turn.User)
				aware, _ := router.RouteConversation(ctx, st.router, turn.User, history, router.ConversationOptions{Switch: sw})
				okAlone := !alone.OutOfScope && alone.Domain == turn.Domain
				okAware := !aware.OutOfScope && aware.Domain == turn.Domain
				if turn.Domain == d.Turns[i-1].Domain {
					s.followUps++
					s.aloneFollow += b2i(okAlone)
					s.awareFollow += b2i(okAware)
				} else {
					s.switches++
					s.aloneSwitch += b2i(okAlone)
					s.awareSwitch += b2i(okAware)
				}
			}
			history = append(history, turn.User)
		}
	}
	return s
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (s dialogueScore) log(t *testing.T, label string) {
	t.Helper()
	all := s.followUps + s.switches
	t.Logf("%s: later turns routed right: alone %.1f%%, with the conversation %.1f%% (follow-ups %d: %.1f%% -> %.1f%%; switches %d: %.1f%% -> %.1f%%)",
		label, s.pct(s.aloneFollow+s.aloneSwitch, all), s.pct(s.awareFollow+s.awareSwitch, all),
		s.followUps, s.pct(s.aloneFollow, s.followUps), s.pct(s.awareFollow, s.followUps),
		s.switches, s.pct(s.aloneSwitch, s.switches), s.pct(s.awareSwitch, s.switches))
}

// TestConversationSwitchOnDevSet shows how the switch confidence trades
// follow-ups against switches on the dev set, where DefaultSwitch was
// chosen.
func TestConversationSwitchOnDevSet(t *testing.T) {
	h := newHost(t, WithEngine(&fakeEngine{}))
	ds := loadDialogues(t, "dialogues_dev.json")
	for _, sw := range []float64{0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1} {
		s := scoreDialogues(t, h, ds, sw)
		s.log(t, "dev, switch "+ftoa(sw))
	}
}

// TestConversationRoutingHeldOut measures the test set once, at the
// default switch: with the conversation, later turns must be routed right
// far more often than alone, and switches must not be lost.
func TestConversationRoutingHeldOut(t *testing.T) {
	h := newHost(t, WithEngine(&fakeEngine{}))
	s := scoreDialogues(t, h, loadDialogues(t, "dialogues_test.json"), router.DefaultSwitch)
	s.log(t, "test, switch "+ftoa(router.DefaultSwitch))
	all := s.followUps + s.switches
	alone, aware := s.pct(s.aloneFollow+s.aloneSwitch, all), s.pct(s.awareFollow+s.awareSwitch, all)
	if aware < alone+15 || s.pct(s.awareFollow, s.followUps) < 80 {
		t.Errorf("conversation-aware routing: %.1f%% of later turns (alone %.1f%%), follow-ups %.1f%%", aware, alone, s.pct(s.awareFollow, s.followUps))
	}
}

func ftoa(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }
