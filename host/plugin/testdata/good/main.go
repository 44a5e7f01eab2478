//go:build wasip1

// Command good is a minimal well-behaved MDSA test plugin.
package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"strconv"
	"time"

	"github.com/mdsa-go/mdsa/host/plugin/testdata/kernel"
)

func main() {}

type message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type request struct {
	Query    string `json:"query"`
	Response string `json:"response"`
}

//go:wasmexport describe
func describe() int32 {
	kernel.Output([]byte(`{"abi":1,"name":"good","version":"1.0.0","description":"test plugin",` +
		`"keywords":["good","test"],"examples":["is this good?"],"model":{"tier":"domain"},` +
		`"generation":{"max_tokens":64,"temperature":0.5,"stop":["\n\n"]},"capabilities":["generate","count_tokens","embed"]}`))
	return 0
}

func input() (request, bool) {
	var r request
	if err := json.Unmarshal(kernel.Input(), &r); err != nil {
		kernel.Error("bad input: " + err.Error())
		return r, false
	}
	return r, true
}

//go:wasmexport prompt
func prompt() int32 {
	r, ok := input()
	if !ok {
		return 1
	}
	system := systemPrompt()
	switch r.Query {
	case "probe":
		system = probe()
	case "probe-http":
		kernel.HTTPGet("http://example.com/")
	}
	out, _ := json.Marshal(struct {
		Messages []message `json:"messages"`
	}{[]message{{"system", system}, {"user", r.Query}}})
	kernel.Output(out)
	return 0
}

//go:wasmexport validate
func validate() int32 {
	r, ok := input()
	if !ok {
		return 1
	}
	if r.Response == "" {
		kernel.Output([]byte(`{"ok":false,"score":0,"issues":[{"code":"empty","severity":"error","message":"empty response"}]}`))
		return 0
	}
	kernel.Output([]byte(`{"ok":true,"score":1,"issues":[]}`))
	return 0
}

//go:wasmexport handle
func handle() int32 {
	r, ok := input()
	if !ok {
		return 1
	}
	extra := ""
	if r.Query == "all-host-functions" {
		q, _ := json.Marshal(r.Query)
		extra = " | count=" + string(kernel.CountTokens([]byte(`{"text":`+string(q)+`}`))) +
			" | embed=" + string(kernel.Embed([]byte(`{"input":[`+string(q)+`,"x"]}`)))
	}
	req, _ := json.Marshal(struct {
		Messages  []message `json:"messages"`
		MaxTokens int       `json:"max_tokens"`
	}{[]message{{"user", r.Query}}, 16})
	reply := kernel.Generate(req)
	var g struct {
		Text  string `json:"text"`
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(reply, &g); err != nil {
		kernel.Error("bad generate reply: " + err.Error())
		return 1
	}
	if g.Error != nil {
		kernel.Error("generate failed: " + g.Error.Code + ": " + g.Error.Message)
		return 1
	}
	out, _ := json.Marshal(struct {
		Response   string `json:"response"`
		Validation any    `json:"validation"`
	}{g.Text + extra, map[string]any{"ok": true, "score": 1, "issues": []any{}}})
	kernel.Output(out)
	return 0
}

// probe reports what the sandbox lets the plugin see.
func probe() string {
	_, ferr := os.ReadFile("/etc/hostname")
	rnd := make([]byte, 8)
	_, _ = rand.Read(rnd)
	return "file_error=" + strconv.FormatBool(ferr != nil) +
		" env=" + strconv.Itoa(len(os.Environ())) +
		" year=" + strconv.Itoa(time.Now().Year()) +
		" rand=" + hex.EncodeToString(rnd)
}

var (
	system     string
	systemRead bool
)

// systemPrompt returns the config value "system" (read once per instance:
// config does not change) or a default.
func systemPrompt() string {
	if !systemRead {
		system, systemRead = "You are good.", true
		if v, ok := kernel.Config("system"); ok {
			system = v
		}
	}
	return system
}
