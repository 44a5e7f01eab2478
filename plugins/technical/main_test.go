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
	if m.Name != "technical" || len(m.Keywords) < 15 || len(m.Examples) < 25 {
		t.Errorf("manifest: %s, %d keywords, %d examples", m.Name, len(m.Keywords), len(m.Examples))
	}
}

func TestCodeFences(t *testing.T) {
	cut := "Use a list comprehension:\n\n```python\nsquares = [x * x for x in range(10)]\n"
	v := sdktest.Validate(t, "list comprehension in python", cut)
	if !slices.Contains(sdktest.Codes(v), sdk.CodeUnbalancedFence) || !strings.HasSuffix(sdktest.Revised(v, cut), "\n```") {
		t.Errorf("open fence: %+v", v)
	}
	whole := "Run this bash command:\n\n```bash\ngit reset --soft HEAD~1\n```\n\nYour changes stay staged."
	if v := sdktest.Validate(t, "undo last git commit", whole); v.Response != nil || !v.OK {
		t.Errorf("balanced answer changed: %+v", v)
	}
}
