package retrievalbench

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/mdsa-go/mdsa/internal/knowledge"
)

// A tiny set whose questions each share words with their own passage only:
// every gold passage is found first, and Load reads what was written.
func TestRunOnATinySet(t *testing.T) {
	dir := t.TempDir()
	ps := []Passage{
		{ID: "a", Title: "Volcanoes", Text: "A volcano erupts when magma rises through the crust and escapes as lava and ash."},
		{ID: "b", Title: "Tides", Text: "Tides are caused by the gravitational pull of the moon and the sun on the oceans."},
		{ID: "c", Title: "Bread", Text: "Yeast ferments sugar in the dough, producing carbon dioxide that makes bread rise."},
	}
	qs := []Question{
		{Question: "What escapes from an erupting volcano?", Gold: []string{"a"}},
		{Question: "What pulls on the oceans to make tides?", Gold: []string{"b"}},
		{Question: "Why does dough rise with yeast?", Gold: []string{"c"}},
		{Question: "???", Gold: []string{"a"}},
	}
	write := func(name string, rows any) {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		enc := json.NewEncoder(f)
		switch v := rows.(type) {
		case []Passage:
			for _, r := range v {
				enc.Encode(r)
			}
		case []Question:
			for _, r := range v {
				enc.Encode(r)
			}
		}
	}
	write("passages.jsonl", ps)
	write("questions.jsonl", qs)
	gotP, gotQ, err := Load(dir)
	if err != nil || len(gotP) != 3 || len(gotQ) != 4 || gotQ[1].Gold[0] != "b" {
		t.Fatalf("Load: %v, %d passages, %d questions", err, len(gotP), len(gotQ))
	}
	st, err := knowledge.Open(context.Background(), knowledge.MemoryPath, knowledge.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r, err := Run(context.Background(), st, gotP, gotQ, 0)
	if err != nil {
		t.Fatal(err)
	}
	if r.Passages != 3 || r.Chunks != 3 || r.Questions != 4 || r.RecallAt1 != 0.75 || r.RecallAt5 != 0.75 || r.MRR10 != 0.75 {
		t.Fatalf("report %+v", r)
	}
	if _, _, err := Load(t.TempDir()); err == nil {
		t.Fatal("an empty directory loaded")
	}
}
