// Package sdktest helps plugins built with github.com/mdsa-go/mdsa/sdk/go
// test their exports natively with go test: each helper runs the
// registered plugin's export on JSON input, exactly as the wasm export
// would, and fails the test on an error.
//
//	func TestValidate(t *testing.T) {
//		v := sdktest.Validate(t, "Is it safe?", "You definitely have the flu.")
//		if !slices.Contains(sdktest.Codes(v), sdk.CodeCertainDiagnosis) { ... }
//	}
package sdktest

import (
	"encoding/json"
	"testing"

	sdk "github.com/mdsa-go/mdsa/sdk/go"
	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// Plugin returns the registered plugin, failing tb if registration failed.
func Plugin(tb testing.TB) *sdk.Compiled {
	tb.Helper()
	c, err := sdk.Registered()
	if err != nil {
		tb.Fatalf("plugin registration: %v", err)
	}
	return c
}

// call runs export with in encoded as JSON and decodes the output into out.
func call(tb testing.TB, h *sdk.Host, export string, in, out any) {
	tb.Helper()
	b, err := json.Marshal(in)
	if err != nil {
		tb.Fatal(err)
	}
	res, err := Plugin(tb).Invoke(h, export, b)
	if err != nil {
		tb.Fatalf("%s: %v", export, err)
	}
	if err := json.Unmarshal(res, out); err != nil {
		tb.Fatalf("%s: output %s: %v", export, res, err)
	}
}

// Describe runs the describe export.
func Describe(tb testing.TB) abi.Manifest {
	tb.Helper()
	var m abi.Manifest
	call(tb, nil, abi.ExportDescribe, nil, &m)
	return m
}

// Prompt runs the prompt export.
func Prompt(tb testing.TB, req abi.PromptRequest) abi.PromptResponse {
	tb.Helper()
	var r abi.PromptResponse
	call(tb, nil, abi.ExportPrompt, req, &r)
	return r
}

// Validate runs the validate export on a query and a response.
func Validate(tb testing.TB, query, response string) abi.Validation {
	tb.Helper()
	var v abi.Validation
	call(tb, nil, abi.ExportValidate, abi.ValidateRequest{Query: query, Response: response, Domain: Plugin(tb).Manifest().Name}, &v)
	return v
}

// Handle runs the handle export with h serving the host calls (see
// sdk.NewHost).
func Handle(tb testing.TB, h *sdk.Host, req abi.PromptRequest) abi.HandleResponse {
	tb.Helper()
	var r abi.HandleResponse
	call(tb, h, abi.ExportHandle, req, &r)
	return r
}

// Codes returns the issue codes of v in order.
func Codes(v abi.Validation) []string {
	out := make([]string, len(v.Issues))
	for i, is := range v.Issues {
		out[i] = is.Code
	}
	return out
}

// Revised returns the revised response of v, or response when there is none.
func Revised(v abi.Validation, response string) string {
	if v.Response != nil {
		return *v.Response
	}
	return response
}
