package enginebench

import (
	"bytes"
	"testing"
)

// checkUsage is what every accepted answer must satisfy.
func checkUsage(t *testing.T, u Usage) {
	t.Helper()
	if u.PromptTokens < 0 || u.CachedTokens < 0 || u.CompletionTokens < 0 || u.CachedTokens > u.PromptTokens {
		t.Fatalf("accepted inconsistent usage %+v", u)
	}
}

// FuzzParseStream feeds untrusted event streams to ParseStream: it must
// never panic, and what it accepts must be consistent.
func FuzzParseStream(f *testing.F) {
	for _, s := range []string{
		llamaServerStream,
		"data: [DONE]\n\n",
		"data: {\"error\":{\"message\":\"x\"}}\n\n",
		"error: boom\n\n",
		": ping\n\ndata: {\"choices\":[],\"timings\":{\"prompt_n\":1,\"cache_n\":2,\"predicted_n\":3}}\n\n",
		"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\ndata: x\n\n",
		"data:{\"usage\":{\"prompt_tokens\":1e400}}\n\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		texts := 0
		u, err := ParseStream(bytes.NewReader(b), func() { texts++ })
		if err == nil {
			checkUsage(t, u)
		}
		if texts > bytes.Count(b, []byte("data:"))+1 {
			t.Fatalf("%d text events from %d data lines", texts, bytes.Count(b, []byte("data:")))
		}
	})
}

// FuzzParseChat feeds untrusted bodies to ParseChat.
func FuzzParseChat(f *testing.F) {
	for _, s := range []string{
		llamaServerChat,
		`{"choices":[{}],"usage":{"prompt_tokens":9,"completion_tokens":3}}`,
		`{"choices":[{}],"timings":{"prompt_n":4,"cache_n":6,"predicted_n":2}}`,
		`{"error":{"message":"x"}}`,
		`{"error":[1,2]}`,
		`null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if u, err := ParseChat(b); err == nil {
			checkUsage(t, u)
		}
	})
}
