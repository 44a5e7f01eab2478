package llamacpp

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/mdsa-go/mdsa/host/engine"
	"github.com/mdsa-go/mdsa/host/structured"
)

// propertySchemas are the schemas of the structured-output property test:
// every construct the grammar compiler supports, alone and mixed.
var propertySchemas = []string{
	`{"type":"object","properties":{"name":{"type":"string","maxLength":16},"age":{"type":"integer"},"ok":{"type":"boolean"}},"required":["name","age","ok"],"additionalProperties":false}`,
	`{"type":"object","properties":{"tags":{"type":"array","items":{"type":"string","enum":["red","green","blue"]},"minItems":1,"maxItems":4},"score":{"type":"number"},"note":{"type":["string","null"],"maxLength":8}},"required":["tags","score"],"additionalProperties":false}`,
	`{"type":"object","properties":{"when":{"type":"string","format":"date"},"at":{"type":"string","format":"date-time"},"id":{"type":"string","format":"uuid"}},"required":["when","at","id"],"additionalProperties":false}`,
	`{"$defs":{"node":{"type":"object","properties":{"v":{"type":"integer"},"kids":{"type":"array","items":{"$ref":"#/$defs/node"},"maxItems":2}},"required":["v"],"additionalProperties":false}},"type":"object","properties":{"tree":{"$ref":"#/$defs/node"}},"required":["tree"],"additionalProperties":false}`,
	`{"type":"object","properties":{"answer":{"anyOf":[{"type":"integer"},{"type":"string","minLength":2,"maxLength":6},{"type":"null"}]},"kind":{"const":"reply"}},"required":["answer","kind"],"additionalProperties":false}`,
	`{"type":"object","properties":{"steps":{"type":"array","items":{"type":"object","properties":{"explanation":{"type":"string","maxLength":24},"output":{"type":"string","maxLength":12}},"required":["explanation","output"],"additionalProperties":false},"maxItems":3},"final_answer":{"type":"string","maxLength":20}},"required":["steps","final_answer"],"additionalProperties":false}`,
	`{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"string","maxLength":4},"c":{"type":"boolean"},"d":{"type":"null"}},"additionalProperties":false}`,
	`{"type":"object","properties":{"matrix":{"type":"array","items":{"type":"array","items":{"type":"number"},"maxItems":3},"maxItems":3},"unit":{"enum":["m","s",1,true,null]}},"required":["matrix","unit"],"additionalProperties":false}`,
}

// The property of structured outputs: with the synthetic model (random
// text), every generation constrained by a strict json_schema format is
// valid JSON that validates against its schema (checked by an independent
// JSON Schema validator), and ends by itself, not at the token limit. 1,000
// generations over propertySchemas, with different seeds and temperatures.
func TestStructuredOutputProperty(t *testing.T) {
	e := openSmall(t, Options{})
	formats := make([]*structured.Format, len(propertySchemas))
	for i, s := range propertySchemas {
		f, err := structured.NewSchemaFormat("s", json.RawMessage(s), true)
		if err != nil {
			t.Fatalf("schema %d: %v", i, err)
		}
		formats[i] = f
	}
	n := 1000
	if testing.Short() {
		n = 40
	}
	temps := []float32{0, 0.7, 1, 1.5}
	var tokens int
	for i := range n {
		f := formats[i%len(formats)]
		req := chatReq(1024)
		req.Params.Grammar = f.Grammar()
		req.Params.Temperature, req.Params.Seed, req.Params.TopK = temps[(i/len(formats))%len(temps)], uint32(i+1), 0
		res, err := e.Generate(context.Background(), req, nil)
		if err != nil {
			t.Fatalf("generation %d (schema %d): %v", i, i%len(formats), err)
		}
		if res.FinishReason != engine.FinishStop {
			t.Fatalf("generation %d (schema %d) hit the limit: %q", i, i%len(formats), res.Text)
		}
		if err := f.Check(res.Text); err != nil {
			t.Fatalf("generation %d (schema %d): %v\n%q", i, i%len(formats), err, res.Text)
		}
		tokens += res.TokensOut
		if i < len(formats) {
			t.Logf("schema %d: %s", i, res.Text)
		}
	}
	t.Logf("%d generations, all valid; %.1f tokens each on average", n, float64(tokens)/float64(n))
}

// Tool calls made under a toolset's grammar parse, name a tool the choice
// allows, and carry arguments valid against its parameters; with the
// choice auto the model may answer instead, never with text that looks
// like a call.
func TestToolCallGrammar(t *testing.T) {
	e := openSmall(t, Options{})
	rate, err := structured.NewTool("get_rate", "the exchange rate", json.RawMessage(`{"type":"object","properties":{"from":{"enum":["EUR","USD","GBP"]},"to":{"enum":["EUR","USD","GBP"]}},"required":["from","to"],"additionalProperties":false}`), true)
	if err != nil {
		t.Fatal(err)
	}
	pay, err := structured.NewTool("loan_payment", "monthly payment", json.RawMessage(`{"type":"object","properties":{"principal":{"type":"number","minimum":0},"years":{"type":"integer"}},"required":["principal","years"]}`), false)
	if err != nil {
		t.Fatal(err)
	}
	n := 60
	if testing.Short() {
		n = 12
	}
	calls, answers := 0, 0
	for _, mode := range []structured.Choice{{Mode: structured.ChoiceRequired}, {Mode: structured.ChoiceFunction, Name: "loan_payment"}, {Mode: structured.ChoiceAuto}} {
		ts, err := structured.NewToolset([]structured.Tool{rate, pay}, mode, mode.Mode == structured.ChoiceRequired)
		if err != nil {
			t.Fatal(err)
		}
		g, err := structured.Grammar(ts, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n / 3 {
			req := chatReq(600)
			req.Params.Grammar = g
			req.Params.Temperature, req.Params.Seed, req.Params.TopK = 1, uint32(i+1), 0
			res, err := e.Generate(context.Background(), req, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !structured.IsCall(res.Text) {
				if mode.Mode != structured.ChoiceAuto {
					t.Fatalf("%s: an answer where a call is required: %q", mode.Mode, res.Text)
				}
				answers++
				continue
			}
			got, ok := structured.Parse(res.Text)
			if !ok || res.FinishReason != engine.FinishStop {
				t.Fatalf("%s: calls that do not parse (%s): %q", mode.Mode, res.FinishReason, res.Text)
			}
			for _, c := range got {
				tool, ok := ts.Find(c.Name)
				if !ok || mode.Mode == structured.ChoiceFunction && c.Name != mode.Name {
					t.Fatalf("%s: a call of %q", mode.Mode, c.Name)
				}
				if tool.Strict {
					if err := tool.Check(c.Arguments); err != nil {
						t.Fatalf("%s: %v: %s", mode.Mode, err, c.Arguments)
					}
				} else if !json.Valid([]byte(c.Arguments)) {
					t.Fatalf("%s: arguments %q", mode.Mode, c.Arguments)
				}
				calls++
			}
		}
	}
	t.Logf("%d calls, %d answers", calls, answers)
}

// BenchmarkConstrained measures decoding under the grammars structured
// outputs and tools use, against the same generation unconstrained:
// tokens/s of each, on the 100M-parameter synthetic model.
func BenchmarkConstrained(b *testing.B) {
	lib := testLibDir(b)
	path := synthModel(b, 100_000_000, "Q4_0")
	e, err := Open(context.Background(), path, Options{LibDir: lib, ContextSize: 1024, Logger: testLogger(b)})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	f, err := structured.NewSchemaFormat("s", json.RawMessage(propertySchemas[5]), true)
	if err != nil {
		b.Fatal(err)
	}
	tool, err := structured.NewTool("lookup", "", json.RawMessage(`{"type":"object","properties":{"q":{"type":"string"}},"required":["q"]}`), true)
	if err != nil {
		b.Fatal(err)
	}
	ts, err := structured.NewToolset([]structured.Tool{tool}, structured.Choice{Mode: structured.ChoiceAuto}, true)
	if err != nil {
		b.Fatal(err)
	}
	toolsGrammar, err := structured.Grammar(ts, nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct{ name, grammar string }{
		{"none", ""}, {"tools-auto", toolsGrammar}, {"json-schema", f.Grammar()},
	} {
		b.Run(c.name, func(b *testing.B) {
			req := chatReq(128)
			req.Params.Grammar, req.Params.Temperature, req.Params.Seed, req.Params.TopK = c.grammar, 1, 1, 0
			req.Params.IgnoreEOS = c.grammar == ""
			if _, err := e.Generate(context.Background(), req, nil); err != nil {
				b.Fatal(err)
			}
			var tokens int
			var gen time.Duration
			for b.Loop() {
				start := time.Now()
				res, err := e.Generate(context.Background(), req, nil)
				if err != nil {
					b.Fatal(err)
				}
				gen += time.Since(start)
				tokens += res.TokensOut
			}
			b.ReportMetric(float64(tokens)/gen.Seconds(), "tokens/s")
			b.ReportMetric(float64(tokens)/float64(b.N), "tokens/op")
		})
	}
}
