package sdk

import (
	"encoding/json"
	"testing"

	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

const benchResponse = "An index fund spreads your money across hundreds of companies, which lowers the risk of any " +
	"single stock hurting you. Fees matter: a 0.05% expense ratio costs $5 a year per $10,000 invested, while 1% " +
	"costs $100. Over 30 years that difference compounds into thousands of dollars. Start with your employer's " +
	"401k match, then consider a Roth IRA if you qualify. Keep an emergency fund of three to six months of " +
	"expenses in a high-yield savings account before investing money you may need soon."

func benchPlugin(b *testing.B) *Compiled {
	b.Helper()
	kw := []string{"budget", "savings", "index fund", "etf", "stock", "retirement", "ira", "loan", "debt", "tax"}
	c, err := Compile(Plugin{
		Manifest: abi.Manifest{Name: "bench", Version: "1", Keywords: kw, Capabilities: []string{abi.CapGenerate}},
		System:   "You are a careful personal-finance educator. Explain trade-offs honestly. Country: {{context.country|unknown}}.",
		Validators: []Validator{MinLength(1), MaxLength(3000), NoRepetition(4, 0.3), NoToxicity(), NoPromisedReturns(),
			Relevance(kw, 1), RedactPII(), RequireDisclaimer("This is general information, not personalised financial advice.")},
	})
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// BenchmarkInvokePromptValidate measures one native prompt+validate pair
// through Invoke (JSON in, JSON out), the work a wasm call does minus the
// sandbox.
func BenchmarkInvokePromptValidate(b *testing.B) {
	c := benchPlugin(b)
	pin, _ := json.Marshal(abi.PromptRequest{Query: "Should I invest in index funds?",
		History: []abi.Message{{Role: abi.RoleUser, Content: "hi"}, {Role: abi.RoleAssistant, Content: "Hello!"}},
		Context: map[string]string{"country": "DE"}})
	vin, _ := json.Marshal(abi.ValidateRequest{Query: "Should I invest in index funds?", Response: benchResponse, Domain: "bench"})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Invoke(nil, abi.ExportPrompt, pin); err != nil {
			b.Fatal(err)
		}
		if _, err := c.Invoke(nil, abi.ExportValidate, vin); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAnalyze measures the shared word analysis of a 500-byte answer.
func BenchmarkAnalyze(b *testing.B) {
	b.SetBytes(int64(len(benchResponse)))
	for b.Loop() {
		analyze(benchResponse)
	}
}
