package llamacpp

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/mdsa-go/mdsa/host/engine"
	"github.com/mdsa-go/mdsa/host/grammar"
)

// A grammar constrains what is generated: the synthetic model, which
// always wants to tell its one sentence, can only answer "yes" or "no".
func TestGrammarConstrainsTheOutput(t *testing.T) {
	e := openSmall(t, Options{})
	ctx := context.Background()
	for _, temp := range []float32{0, 0.8} {
		req := chatReq(20)
		req.Params.Temperature, req.Params.Seed = temp, 7
		req.Params.Grammar = `root ::= "yes" | "no"`
		res, err := e.Generate(ctx, req, nil)
		if err != nil {
			t.Fatal(err)
		}
		if (res.Text != "yes" && res.Text != "no") || res.FinishReason != engine.FinishStop {
			t.Fatalf("temperature %v: %q (%s)", temp, res.Text, res.FinishReason)
		}
	}
	req := chatReq(20)
	req.Params.Grammar = `root ::= undefined-rule`
	if _, err := e.Generate(ctx, req, nil); !errors.Is(err, engine.ErrInvalidInput) {
		t.Fatalf("a grammar that does not parse: %v", err)
	}
}

// Generations under a grammar compiled from a JSON Schema are valid JSON
// of the schema's shape, whatever the sampling.
func TestGrammarFromSchemaGivesValidJSON(t *testing.T) {
	e := openSmall(t, Options{})
	schema := `{"type": "object", "properties": {
		"name": {"type": "string", "maxLength": 12},
		"age": {"type": "integer"},
		"tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}, "maxItems": 3},
		"ok": {"type": "boolean"}}, "required": ["name", "age", "tags", "ok"], "additionalProperties": false}`
	g, err := grammar.FromSchema([]byte(schema), grammar.Options{MaxStringLen: 12})
	if err != nil {
		t.Fatal(err)
	}
	n := 20
	if testing.Short() {
		n = 5
	}
	for i := range n {
		req := chatReq(300)
		req.Params.Grammar = g
		req.Params.Temperature, req.Params.Seed, req.Params.TopK = 1.0, uint32(i+1), 0
		res, err := e.Generate(context.Background(), req, nil)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Name *string  `json:"name"`
			Age  *int64   `json:"age"`
			Tags []string `json:"tags"`
			OK   *bool    `json:"ok"`
		}
		dec := json.NewDecoder(strings.NewReader(res.Text))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&doc); err != nil || doc.Name == nil || doc.Age == nil || doc.OK == nil || len(doc.Tags) > 3 ||
			len([]rune(*doc.Name)) > 12 || res.FinishReason != engine.FinishStop {
			t.Fatalf("generation %d: %q (%s): %v", i, res.Text, res.FinishReason, err)
		}
		if i < 3 {
			t.Logf("generation %d: %s", i, res.Text)
		}
		for _, tag := range doc.Tags {
			if tag != "a" && tag != "b" {
				t.Fatalf("generation %d: tag %q not in the enum", i, tag)
			}
		}
	}
}
