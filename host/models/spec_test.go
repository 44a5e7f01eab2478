package models

import (
	"testing"
)

func TestSpecMatches(t *testing.T) {
	s := Spec{Name: "Qwen2.5-0.5B-Instruct", Quant: "Q4_K_M", Tags: []string{"tiny"}}
	for p, want := range map[string]bool{
		"qwen2.5-0.5b-instruct":        true,
		"qwen2.5-0.5b-instruct:q4_k_m": true,
		"qwen2.5":                      true,
		"qwen2.5-0.5b":                 true,
		"TINY":                         true,
		"qwen":                         false,
		"qwen2.5-0.5b-instruct:q8_0":   false,
		"":                             false,
		"instruct":                     false,
	} {
		if got := s.matches(p); got != want {
			t.Errorf("matches(%q) = %v, want %v", p, got, want)
		}
	}
}
