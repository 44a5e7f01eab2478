package main

import (
	"encoding/json"
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

func TestLoanPaymentTool(t *testing.T) {
	m := sdktest.Describe(t)
	if m.ABIMinor != 1 || len(m.Tools) != 1 || m.Tools[0].Name != "loan_payment" {
		t.Fatalf("tools in the manifest: abi_minor %d, %+v", m.ABIMinor, m.Tools)
	}
	c := sdktest.Plugin(t)
	for _, tc := range []struct {
		args, want string
		isErr      bool
	}{
		// 200,000 at 6% over 30 years: the textbook 1,199.10 a month.
		{`{"principal":200000,"annual_rate_percent":6,"years":30}`, `"monthly_payment":1199.1`, false},
		{`{"principal":12000,"annual_rate_percent":0,"years":1}`, `"monthly_payment":1000`, false},
		{`{"principal":-5,"annual_rate_percent":6,"years":30}`, "principal must be above 0", true},
		{`{"principal":1000,"annual_rate_percent":6,"years":0.01}`, "at least one monthly payment", true},
		{`{"principal":"lots"}`, "arguments", true},
	} {
		out, err := c.Invoke(nil, abi.ExportTool, []byte(`{"name":"loan_payment","arguments":`+tc.args+`}`))
		if err != nil {
			t.Fatal(err)
		}
		var r abi.ToolResponse
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatal(err)
		}
		if r.IsError != tc.isErr || !strings.Contains(r.Content, tc.want) {
			t.Errorf("%s: %+v, want %q (error %v)", tc.args, r, tc.want, tc.isErr)
		}
	}
	if _, err := c.Invoke(nil, abi.ExportTool, []byte(`{"name":"nope","arguments":{}}`)); err == nil {
		t.Error("an undeclared tool ran")
	}
}
