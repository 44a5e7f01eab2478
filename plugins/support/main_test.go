package main

import (
	"slices"
	"strings"
	"testing"

	sdk "github.com/mdsa-go/mdsa/sdk/go"
	"github.com/mdsa-go/mdsa/sdk/go/sdktest"
)

func TestManifest(t *testing.T) {
	m := sdktest.Describe(t)
	if m.Name != "support" || len(m.Keywords) < 15 || len(m.Examples) < 25 {
		t.Errorf("manifest: %s, %d keywords, %d examples", m.Name, len(m.Keywords), len(m.Examples))
	}
}

func TestNoPIIEcho(t *testing.T) {
	answer := "I found your order. It was paid with card 5555 5555 5555 4444 and the receipt went to sam@example.org; " +
		"we will call you at (555) 123-4567 before the delivery."
	v := sdktest.Validate(t, "Which card did I use for my order?", answer)
	got := sdktest.Revised(v, answer)
	if !v.OK || !slices.Contains(sdktest.Codes(v), sdk.CodePIIRedacted) {
		t.Errorf("validation: %+v", v)
	}
	for _, leak := range []string{"5555 5555", "4444", "sam@example.org", "123-4567"} {
		if strings.Contains(got, leak) {
			t.Errorf("answer still contains %q: %q", leak, got)
		}
	}
	clean := sdktest.Validate(t, "Where is my order?", "Your order shipped yesterday; the tracking link is in your confirmation email.")
	if clean.Response != nil || !clean.OK {
		t.Errorf("clean answer changed: %+v", clean)
	}
}
