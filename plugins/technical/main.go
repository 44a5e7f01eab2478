// Command technical is the MDSA software and IT domain plugin: programming,
// debugging, build and deployment tooling, databases, networking and
// system administration. It closes code blocks an answer leaves open (for
// example when generation stops at the token limit).
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -ldflags=-s -o technical.wasm .
package main

import (
	sdk "github.com/mdsa-go/mdsa/sdk/go"
	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

var keywords = []string{
	"code", "function", "error", "bug", "exception", "stack trace", "compile", "python",
	"javascript", "golang", "rust", "java", "api", "http", "json", "database", "sql",
	"command line", "docker", "kubernetes", "git", "linux", "bash", "server", "deploy", "regex",
	"memory leak", "thread", "library", "configuration", "terminal", "network", "ssh",
}

var examples = []string{
	"Why does my Python script throw KeyError when the key is clearly in the dict?",
	"How do I undo the last git commit but keep my changes?",
	"What's the difference between a goroutine and an OS thread?",
	"My Docker container exits immediately after starting, how do I debug it?",
	"Write a SQL query that finds duplicate emails in a users table",
	"How do I fix 'permission denied (publickey)' when I ssh into my server?",
	"Explain the difference between TCP and UDP",
	"my react component re-renders in an infinite loop when I call setState in useEffect",
	"What does 'segmentation fault (core dumped)' mean in C?",
	"How can I find which process is using port 8080 on Linux?",
	"Regex to validate an IPv4 address?",
	"Why is my Node.js app's memory usage growing until it crashes?",
	"How do I set environment variables for a Kubernetes deployment?",
	"What is the time complexity of inserting into a hash map?",
	"nginx returns 502 bad gateway behind my gunicorn app",
	"How do I parse a JSON response in Go into a struct?",
	"Cargo says 'borrowed value does not live long enough', what does that mean?",
	"How do I make a bash script stop on the first error?",
	"Should I use PostgreSQL or MongoDB for an app with lots of relations?",
	"How do I write a unit test that mocks an HTTP call in Java?",
	"git says my branch has diverged, how do I fix it?",
	"What's the cleanest way to retry a failing API request with exponential backoff?",
	"my laptop can't resolve DNS names but pinging 8.8.8.8 works",
	"How do I add an index to speed up a slow SQL query?",
	"CORS error when my frontend calls the backend on another port",
	"How do I profile CPU usage in a Go program?",
	"What does the 'async' keyword actually do in JavaScript?",
	"How do I free up disk space on an Ubuntu server that says no space left on device?",
	"Convert this for loop into a list comprehension in Python",
}

func init() {
	sdk.Register(sdk.Plugin{
		Manifest: abi.Manifest{
			Name:        "technical",
			Version:     "1.0.0",
			Description: "Software and IT help: programming, debugging, tooling, databases, networking and system administration.",
			Keywords:    keywords,
			Examples:    examples,
			Model: abi.ModelPref{
				Tier:       abi.TierDomain,
				Prefer:     []string{"qwen2.5-coder-1.5b-instruct", "qwen2.5-1.5b-instruct"},
				MinContext: 4096,
			},
			Generation: abi.Generation{
				MaxTokens:     768,
				Temperature:   sdk.F32(0.2),
				TopP:          sdk.F32(0.95),
				TopK:          40,
				RepeatPenalty: sdk.F32(1.05),
			},
			Capabilities: []string{abi.CapGenerate},
		},
		System: "You are a senior software engineer helping a colleague. Answer programming, debugging, " +
			"DevOps, database, networking and system-administration questions precisely. Start with the " +
			"most likely cause or the direct answer, then show a minimal working example in a fenced code " +
			"block with its language named (```python, ```bash, ...). Point out destructive commands " +
			"(data loss, force pushes, rm -rf) before showing them. Do not invent APIs or flags; say when " +
			"you are unsure. The user's environment, if known: {{context.environment|not stated}}.",
		Template:   "{{query}}",
		MaxHistory: 8,
		Validators: []sdk.Validator{
			sdk.MinLength(1),
			sdk.MaxLength(6000),
			sdk.NoRepetition(5, 0.35),
			sdk.NoToxicity(),
			sdk.BalancedCodeFences(),
			sdk.Relevance(keywords, 1),
		},
	})
}

func main() {}
