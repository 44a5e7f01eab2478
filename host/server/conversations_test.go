package server

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mdsa-go/mdsa/internal/testutil"
)

// convConfig is the multi-tenant configuration with conversations kept
// in a SQLite file of the test.
func convConfig(t testing.TB) (cfgPath string, maxMessages int) {
	return filepath.Join(t.TempDir(), "conversations.db"), 6
}

func convServer(t *testing.T, store string) string {
	t.Helper()
	cfg := tenantConfig(t)
	cfg.Conversations.Enabled = true
	cfg.Conversations.Path, cfg.Conversations.MaxMessages = convConfig(t)
	if store == "postgres" {
		cfg.Conversations.Store, cfg.Conversations.URL = "postgres", testutil.StartPostgres(t)
	}
	return startServer(t, newServer(t, tenantHost(t), cfg)).URL
}

type convObject struct {
	ID       string `json:"id"`
	Object   string `json:"object"`
	Count    int    `json:"messages_count"`
	Messages []struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	} `json:"messages"`
}

func newConversation(t *testing.T, url, key string) string {
	t.Helper()
	r := do(t, http.MethodPost, url+"/v1/conversations", key, nil)
	var c convObject
	if r.code != http.StatusCreated || json.Unmarshal(r.body, &c) != nil || !strings.HasPrefix(c.ID, "conv_") {
		t.Fatalf("create: %d %s", r.code, r.body)
	}
	return c.ID
}

func getConversation(t *testing.T, url, key, id string) convObject {
	t.Helper()
	r := do(t, http.MethodGet, url+"/v1/conversations/"+id, key, nil)
	var c convObject
	if r.code != http.StatusOK || json.Unmarshal(r.body, &c) != nil {
		t.Fatalf("get %s: %d %s", id, r.code, r.body)
	}
	return c
}

func TestConversationsKeptPerTenant(t *testing.T) {
	for _, store := range []string{"sqlite", "postgres"} {
		t.Run(store, func(t *testing.T) { testConversationsKept(t, convServer(t, store)) })
	}
}

func testConversationsKept(t *testing.T, url string) {
	id := newConversation(t, url, acmeKey)

	// A turn through /v1/query, then a follow-up that says little alone.
	q := map[string]any{"query": qSupport, "conversation_id": id, "generation": map[string]int{"max_tokens": 4}}
	if r := do(t, http.MethodPost, url+"/v1/query", acmeKey, q); r.code != 200 {
		t.Fatalf("first turn: %d %s", r.code, r.body)
	}
	follow := map[string]any{"query": "and how long will that take?", "conversation_id": id, "generation": map[string]int{"max_tokens": 4}}
	r := do(t, http.MethodPost, url+"/v1/query", acmeKey, follow)
	var res struct {
		Domain       string `json:"domain"`
		Conversation *struct {
			Prior  string `json:"prior"`
			Reason string `json:"reason"`
		} `json:"conversation"`
	}
	if r.code != 200 || json.Unmarshal(r.body, &res) != nil || res.Domain != "support" || res.Conversation == nil || res.Conversation.Prior != "support" {
		t.Fatalf("follow-up: %d %s", r.code, r.body)
	}
	c := getConversation(t, url, acmeKey, id)
	if c.Count != 4 || len(c.Messages) != 4 || c.Messages[0].Content != qSupport || c.Messages[1].Role != "assistant" ||
		c.Messages[2].Content != "and how long will that take?" {
		t.Fatalf("kept: %+v", c)
	}

	// A chat completion continues it too, streamed.
	chat := chatBody("mdsa", "thanks, and can I get it to another address?")
	chat["conversation_id"], chat["stream"], chat["max_tokens"] = id, true, 4
	if r := do(t, http.MethodPost, url+"/v1/chat/completions", acmeKey, chat); r.code != 200 || !strings.Contains(string(r.body), "[DONE]") {
		t.Fatalf("chat: %d %s", r.code, r.body)
	}
	if c := getConversation(t, url, acmeKey, id); c.Count != 6 {
		t.Fatalf("after the chat: %d messages", c.Count)
	}
	// Full (max_messages = 6): refused before any work, with why.
	if r := do(t, http.MethodPost, url+"/v1/query", acmeKey, q); r.code != http.StatusConflict || r.errorDoc(t).Error.Code != "conversation_limit" {
		t.Fatalf("over max_messages: %d %s", r.code, r.body)
	}

	// Another tenant sees none of it.
	for _, probe := range []struct{ method, path string }{
		{http.MethodGet, "/v1/conversations/" + id}, {http.MethodDelete, "/v1/conversations/" + id},
	} {
		if r := do(t, probe.method, url+probe.path, globexKey, nil); r.code != http.StatusNotFound || r.errorDoc(t).Error.Code != "conversation_not_found" {
			t.Fatalf("globex %s: %d %s", probe.method, r.code, r.body)
		}
	}
	gq := map[string]any{"query": qMedical, "conversation_id": id}
	if r := do(t, http.MethodPost, url+"/v1/query", globexKey, gq); r.code != http.StatusNotFound || paramOf(t, r) != "conversation_id" {
		t.Fatalf("globex continuing acme's: %d %s", r.code, r.body)
	}
	var list struct {
		Data []convObject `json:"data"`
	}
	if r := do(t, http.MethodGet, url+"/v1/conversations", globexKey, nil); json.Unmarshal(r.body, &list) != nil || len(list.Data) != 0 {
		t.Fatalf("globex's list: %s", r.body)
	}
	if r := do(t, http.MethodGet, url+"/v1/conversations?limit=10", acmeKey, nil); json.Unmarshal(r.body, &list) != nil || len(list.Data) != 1 || list.Data[0].ID != id {
		t.Fatalf("acme's list: %s", r.body)
	}

	// Bad input: a clear 4xx naming the field.
	for _, c := range []struct {
		method, path string
		body         any
		code         int
		param        string
	}{
		{http.MethodGet, "/v1/conversations?limit=0", nil, 400, "limit"},
		{http.MethodGet, "/v1/conversations/conv_nope", nil, 404, "conversation_id"},
		{http.MethodPost, "/v1/query", map[string]any{"query": "x", "conversation_id": 7}, 400, "conversation_id"},
		{http.MethodPost, "/v1/chat/completions", map[string]any{"model": "tiny", "conversation_id": id,
			"messages": []map[string]string{{"role": "user", "content": "hi"}}}, 400, "conversation_id"},
	} {
		r := do(t, c.method, url+c.path, acmeKey, c.body)
		if r.code != c.code || paramOf(t, r) != c.param {
			t.Errorf("%s %s: %d %s", c.method, c.path, r.code, r.body)
		}
	}
	if r := do(t, http.MethodPut, url+"/v1/conversations", acmeKey, nil); r.code != http.StatusMethodNotAllowed || r.header.Get("Allow") != "POST, GET, HEAD" {
		t.Fatalf("PUT: %d %v", r.code, r.header.Get("Allow"))
	}

	// Deleted means gone.
	if r := do(t, http.MethodDelete, url+"/v1/conversations/"+id, acmeKey, nil); r.code != 200 {
		t.Fatalf("delete: %d %s", r.code, r.body)
	}
	if r := do(t, http.MethodGet, url+"/v1/conversations/"+id, acmeKey, nil); r.code != http.StatusNotFound {
		t.Fatalf("after delete: %d %s", r.code, r.body)
	}
}

func TestConversationsOff(t *testing.T) {
	ts := startServer(t, newServer(t, openHost(t), openConfig(t)))
	if r := do(t, http.MethodPost, ts.URL+"/v1/conversations", "", nil); r.code != http.StatusNotFound || r.errorDoc(t).Error.Code != "conversations_disabled" {
		t.Fatalf("off: %d %s", r.code, r.body)
	}
	q := map[string]any{"query": qSupport, "conversation_id": "conv_0123456789abcdef01234567"}
	if r := do(t, http.MethodPost, ts.URL+"/v1/query", "", q); r.code != http.StatusNotFound || paramOf(t, r) != "conversation_id" {
		t.Fatalf("off, with an id: %d %s", r.code, r.body)
	}
}

// paramOf is the param of r's error document ("" when null).
func paramOf(t *testing.T, r response) string {
	t.Helper()
	if p := r.errorDoc(t).Error.Param; p != nil {
		return *p
	}
	return ""
}
