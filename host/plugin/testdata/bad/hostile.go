//go:build wasip1

package main

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/mdsa-go/mdsa/host/plugin/testdata/kernel"
)

var (
	sink []byte
	spin uint64
)

// The classes of mdsa bench hostile that need a plugin of their own.
func init() {
	// spinfail spins 800 ms, then fails: without throttling of fresh
	// instances, each request would burn 0.8 CPU-s on a new instance.
	behaviours["spinfail"] = behaviour{prompt: func() int32 {
		for end := time.Now().Add(800 * time.Millisecond); time.Now().Before(end); {
			for range 1000 {
				spin++
			}
		}
		kernel.Error("spun, then failed")
		return 1
	}}
	// fill clears 32 MiB again and again (memory.fill): few yield points,
	// long ones.
	behaviours["fill"] = behaviour{prompt: func() int32 {
		sink = make([]byte, 32<<20)
		for {
			clear(sink)
		}
	}}
	// embedflood asks for embeddings of 512 texts of 2 KB, 8 times.
	behaviours["embedflood"] = behaviour{caps: `["embed"]`, prompt: func() int32 {
		text := strconv.Quote(strings.Repeat("lorem ipsum dolor sit amet ", 76))
		req := []byte(`{"input":[` + strings.Repeat(text+",", 511) + text + `]}`)
		for range 8 {
			_ = kernel.Embed(req)
		}
		return kernel.OK("prompt")
	}}
	// bigprompt generates from a 1 MiB prompt, 8 times.
	behaviours["bigprompt"] = behaviour{caps: `["generate"]`, prompt: func() int32 {
		req := []byte(`{"prompt":"` + strings.Repeat("tell me more ", (1<<20)/13) + `","max_tokens":64}`)
		for range 8 {
			_ = kernel.Generate(req)
		}
		return kernel.OK("prompt")
	}}
	// tokens generates 4096 tokens, 8 times, whatever the request's
	// max_tokens says.
	behaviours["tokens"] = behaviour{caps: `["generate"]`, prompt: func() int32 {
		for range 8 {
			_ = kernel.Generate([]byte(`{"prompt":"count to a million","max_tokens":4096}`))
		}
		return kernel.OK("prompt")
	}}
	// recurse calls itself without end: Go's goroutine stack lives in
	// linear memory, but each Go call is also a wasm call, so the wasm
	// call stack grows with it.
	behaviours["recurse"] = behaviour{prompt: func() int32 {
		return int32(recurse(1 << 30))
	}}
	// bigmanifest describes itself with the most the manifest caps allow:
	// 1,024 keywords and examples of ~900 bytes up to the size cap.
	// It behaves otherwise (its prompt carries the query), so that it
	// passes the admin API's conformance check and is trained.
	behaviours["bigmanifest"] = behaviour{extra: bigManifest, prompt: func() int32 {
		var req struct {
			Query string `json:"query"`
		}
		_ = json.Unmarshal(kernel.Input(), &req)
		out, _ := json.Marshal(map[string]any{"messages": []map[string]string{{"role": "user", "content": req.Query}}})
		kernel.Output(out)
		return 0
	}}
}

//go:noinline
func recurse(n uint64) uint64 {
	if n == 0 {
		return 0
	}
	return recurse(n-1) + n&1
}

// bigManifest is the keywords and examples of bigmanifest, as JSON fields.
func bigManifest() string {
	var b strings.Builder
	b.WriteString(`"description":"a manifest at every cap","keywords":[`)
	for i := range 1024 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"kw` + strconv.Itoa(i) + `x` + strconv.Itoa(i*7919%100003) + `"`)
	}
	b.WriteString(`],"examples":[`)
	for i := range 880 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('"')
		for j := range 100 {
			b.WriteString("w" + strconv.Itoa((i*131+j*7)%50021) + " ")
		}
		b.WriteByte('"')
	}
	b.WriteString(`]`)
	return b.String()
}
