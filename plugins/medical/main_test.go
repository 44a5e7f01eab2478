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
	if m.Name != "medical" || len(m.Keywords) < 15 || len(m.Examples) < 25 {
		t.Errorf("manifest: %s, %d keywords, %d examples", m.Name, len(m.Keywords), len(m.Examples))
	}
}

func TestValidate(t *testing.T) {
	bad := sdktest.Validate(t, "My head hurts", "You definitely have a brain tumor. There is no need to see a doctor.")
	if bad.OK || !slices.Contains(sdktest.Codes(bad), sdk.CodeCertainDiagnosis) {
		t.Errorf("certain diagnosis not caught: %+v", bad)
	}
	answer := "A tension headache is common after long screen time; rest, water and a mild pain reliever often help."
	v := sdktest.Validate(t, "My head hurts after work", answer)
	if !v.OK || !strings.HasSuffix(sdktest.Revised(v, answer), disclaimer) {
		t.Errorf("disclaimer: %+v", v)
	}
	if strings.HasPrefix(sdktest.Revised(v, answer), emergencyNotice) {
		t.Error("emergency notice added to a non-emergency")
	}
	em := sdktest.Validate(t, "I have crushing chest pain and can't breathe", "It may be heartburn.")
	if !strings.HasPrefix(sdktest.Revised(em, ""), emergencyNotice) || !slices.Contains(sdktest.Codes(em), "emergency_notice_added") {
		t.Errorf("emergency: %+v", em)
	}
	told := sdktest.Validate(t, "crushing chest pain", "Call 911 now. Chest pain can be a heart attack.")
	if strings.HasPrefix(sdktest.Revised(told, ""), emergencyNotice) {
		t.Error("emergency notice duplicated")
	}
}
