package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mdsa-go/mdsa/host"
	"github.com/mdsa-go/mdsa/host/config"
)

// Right after make setup no model is downloaded: ask and serve fall back to
// the synthetic model, writing it, and say so; with the configured model on
// disk they do not.
func TestModelFallback(t *testing.T) {
	dir := t.TempDir()
	cfg, err := config.Load("../../mdsa.toml") // the shipped catalog
	if err != nil {
		t.Fatal(err)
	}
	cfg.Host.ModelsDir = filepath.Join(dir, "models")
	file, notice, err := modelFallback(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "models", synthFile); file != want {
		t.Fatalf("fallback file %q, want %q", file, want)
	}
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("the synthetic model was not written: %v", err)
	}
	for _, w := range []string{cfg.Engine.Model, "SYNTHETIC", "models pull " + cfg.Engine.Model, "--model-file"} {
		if !strings.Contains(notice, w) {
			t.Errorf("notice %q does not mention %q", notice, w)
		}
	}
	// The configured model present: no fallback.
	_, v, err := cfg.Models[cfg.Engine.Model].Variant(cfg.Engine.Quant)
	if err != nil {
		t.Fatal(err)
	}
	name := v.Path
	if name == "" {
		name = v.File
	}
	if err := os.WriteFile(filepath.Join(dir, "models", name), []byte("GGUF"), 0o644); err != nil {
		t.Fatal(err)
	}
	if file, notice, err := modelFallback(cfg); file != "" || notice != "" || err != nil {
		t.Fatalf("with the model on disk: %q %q %v", file, notice, err)
	}
}

// ask --stream prints the model's tokens as they come, then what
// validation changed: an appended disclaimer, or the rewritten answer.
func TestPrintRevision(t *testing.T) {
	for _, c := range []struct {
		streamed, final, want string
	}{
		{"Hello.", "Hello.", ""},
		{"Hello.", "Hello.\n\nNot advice.", "\n\nNot advice."},
		{"Hello.", "Goodbye.", "\n\n[revised by the medical plugin's validation:]\nGoodbye."},
	} {
		var out strings.Builder
		a := &app{out: &out}
		a.printRevision(c.streamed, host.Result{Response: c.final, Domain: "medical", Status: host.StatusOK})
		if out.String() != c.want {
			t.Errorf("streamed %q, final %q: printed %q, want %q", c.streamed, c.final, out.String(), c.want)
		}
	}
}

// Mistakes a new user makes are refused with a message, not accepted.
func TestCLIRefusesMistakes(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"ask", ""}, "the query is empty"},
		{[]string{"ask", "  "}, "the query is empty"},
		{[]string{"ask", "--max-tokens", "-1", "hi"}, "--max-tokens -1"},
		{[]string{"ask", "--temperature", "-0.5", "hi"}, "--temperature -0.5"},
	} {
		if _, _, err := run(t, c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want an error with %q", c.args, err, c.want)
		}
	}
	// models synth does not overwrite a file unless told to.
	path := filepath.Join(t.TempDir(), "m.gguf")
	if _, _, err := run(t, "models", "synth", path); err != nil {
		t.Fatal(err)
	}
	if _, _, err := run(t, "models", "synth", path); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("second synth over the same file: %v", err)
	}
	if _, _, err := run(t, "models", "synth", "--force", path); err != nil {
		t.Fatalf("synth --force: %v", err)
	}
	// --lang is not case-sensitive.
	if _, _, ok := scaffoldLang("C"); !ok {
		t.Fatal("--lang C refused")
	}
}

// version names the llama.cpp release and build make setup installed,
// read from the files, without loading them.
func TestLlamaVersion(t *testing.T) {
	dir := t.TempDir()
	if got := llamaVersion(dir); !strings.Contains(got, "not installed") {
		t.Fatalf("empty dir: %q", got)
	}
	for _, f := range []string{"libllama.so", "libllama.v0.5.0.so"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, ".installed-3.22.1-cpu"), []byte("version=3.22.1\nbackend=cpu\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, want := llamaVersion(dir), "v0.5.0 (node-llama-cpp 3.22.1, cpu build) in "+dir; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}
