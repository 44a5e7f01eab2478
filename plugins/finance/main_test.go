package main

import (
	"slices"
	"strings"
	"testing"

	sdk "github.com/mdsa-go/mdsa/sdk/go"
	"github.com/mdsa-go/mdsa/sdk/go/abi"
	"github.com/mdsa-go/mdsa/sdk/go/sdktest"
)

func TestManifest(t *testing.T) {
	m := sdktest.Describe(t)
	if m.Name != "finance" || len(m.Keywords) < 15 || len(m.Examples) < 25 {
		t.Errorf("manifest: %s, %d keywords, %d examples", m.Name, len(m.Keywords), len(m.Examples))
	}
	p := sdktest.Prompt(t, abi.PromptRequest{Query: "Should I buy bonds?", Context: map[string]string{"country": "Germany"}})
	if sys := p.Messages[0].Content; p.Messages[0].Role != abi.RoleSystem || !strings.Contains(sys, "country, if known: Germany") {
		t.Errorf("system prompt: %+v", p.Messages[0])
	}
}

func TestValidate(t *testing.T) {
	bad := sdktest.Validate(t, "Is this fund good?", "Absolutely, it has guaranteed returns and you can't lose money.")
	if bad.OK || !slices.Contains(sdktest.Codes(bad), sdk.CodePromisedReturns) {
		t.Errorf("promised returns not caught: %+v", bad)
	}
	good := sdktest.Validate(t, "What is an index fund?",
		"An index fund tracks a market index, so it spreads your money over many stocks at a low cost. "+
			"Returns are not guaranteed and prices can fall.")
	if !good.OK || !strings.Contains(sdktest.Revised(good, ""), "not personalised financial advice") {
		t.Errorf("good answer: %+v", good)
	}
	own := sdktest.Validate(t, "q", "Index funds track the market. This is not financial advice.")
	if own.Response != nil {
		t.Errorf("an answer with its own disclaimer was changed: %q", *own.Response)
	}
}
