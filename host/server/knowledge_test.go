package server

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mdsa-go/mdsa/host"
)

const helpCentre = `# Returns

## Damaged parcels

If a parcel arrives damaged, photograph the box and the item within 14 days and open a claim from
your orders page. We refund damaged items in full, including delivery, once the claim is approved.

## Refund times

Refunds reach the original payment method within 5 to 7 working days of approval.
`

// rawPost sends body with a media type.
func rawPost(t *testing.T, url, key, contentType string, body []byte) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return response{code: resp.StatusCode, header: resp.Header, body: b.Bytes()}
}

// Knowledge bases through the API, per tenant: ingestion of every type,
// listing, search, deletion, every mistake a 4xx, no tenant seeing
// another's; and a query to a domain that declares a knowledge base is
// answered with the passages found, cited.
func TestKnowledgeAPI(t *testing.T) {
	cfg := tenantConfig(t)
	cfg.Knowledge.Enabled = true
	cfg.Knowledge.Path = filepath.Join(t.TempDir(), "kb.db")
	cfg.Knowledge.MaxDocKB = 8
	cfg.Knowledge.MaxKBsPerTenant = 2
	h, err := host.New(context.Background(), cfg, host.WithLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	url := startServer(t, newServer(t, h, cfg)).URL
	kb := url + "/v1/knowledge/support"

	r := rawPost(t, kb+"/documents?title=Help+centre&source=help.md", acmeKey, "text/markdown; charset=utf-8", []byte(helpCentre))
	var doc struct {
		ID     string `json:"id"`
		Title  string `json:"title"`
		Chunks int    `json:"chunks"`
		Type   string `json:"type"`
	}
	if r.code != http.StatusCreated || json.Unmarshal(r.body, &doc) != nil || doc.ID == "" || doc.Chunks < 1 || doc.Type != "markdown" {
		t.Fatalf("markdown upload: %d %s", r.code, r.body)
	}
	r = do(t, http.MethodPost, kb+"/documents", acmeKey, map[string]string{"title": "Gift cards", "text": "Gift cards never expire and cannot be exchanged for cash."})
	if r.code != http.StatusCreated {
		t.Fatalf("JSON upload: %d %s", r.code, r.body)
	}
	r = rawPost(t, kb+"/documents", acmeKey, "text/html", []byte(`<html><head><title>Shipping</title><script>alert(1)</script></head><body><h1>Shipping</h1><p>Standard delivery takes 3 working days.</p></body></html>`))
	if r.code != http.StatusCreated || strings.Contains(string(r.body), "alert") {
		t.Fatalf("HTML upload: %d %s", r.code, r.body)
	}

	// Search finds the passage that answers.
	r = do(t, http.MethodPost, kb+"/search", acmeKey, map[string]any{"query": "my parcel came damaged, how do I get a refund?", "top_k": 3})
	var hits struct {
		Data []struct {
			Document string `json:"document"`
			Text     string `json:"text"`
		} `json:"data"`
	}
	if r.code != http.StatusOK || json.Unmarshal(r.body, &hits) != nil || len(hits.Data) == 0 || hits.Data[0].Document != doc.ID ||
		!strings.Contains(hits.Data[0].Text, "photograph") {
		t.Fatalf("search: %d %s", r.code, r.body)
	}

	// Another tenant sees nothing of it.
	if r := do(t, http.MethodGet, kb+"/documents/"+doc.ID, globexKey, nil); r.code != http.StatusNotFound {
		t.Fatalf("globex read acme's document: %d %s", r.code, r.body)
	}
	if r := do(t, http.MethodDelete, kb+"/documents/"+doc.ID, globexKey, nil); r.code != http.StatusNotFound {
		t.Fatalf("globex deleted acme's document: %d %s", r.code, r.body)
	}
	if r := do(t, http.MethodPost, kb+"/search", globexKey, map[string]any{"query": "damaged parcel refund"}); r.code == http.StatusOK &&
		strings.Contains(string(r.body), "photograph") {
		t.Fatalf("globex searched acme's knowledge: %s", r.body)
	}
	if r := do(t, http.MethodGet, url+"/v1/knowledge", globexKey, nil); !strings.Contains(string(r.body), `"data":[]`) {
		t.Fatalf("globex lists: %s", r.body)
	}
	r = do(t, http.MethodGet, url+"/v1/knowledge", acmeKey, nil)
	if r.code != http.StatusOK || !strings.Contains(string(r.body), `"name":"support"`) || !strings.Contains(string(r.body), `"documents":3`) {
		t.Fatalf("acme lists: %d %s", r.code, r.body)
	}
	if r := do(t, http.MethodGet, kb+"/documents?limit=2", acmeKey, nil); r.code != http.StatusOK || !strings.Contains(string(r.body), `"has_more":true`) {
		t.Fatalf("documents: %d %s", r.code, r.body)
	}

	// The support domain answers with its passages, cited.
	body := chatBody("mdsa/support", "My parcel arrived damaged, can I get a refund?")
	body["max_tokens"] = 8
	r = do(t, http.MethodPost, url+"/v1/chat/completions", acmeKey, body)
	var cc chatCompletion
	if r.code != http.StatusOK || json.Unmarshal(r.body, &cc) != nil || len(cc.MDSA.Citations) == 0 || cc.MDSA.Citations[0].Document != doc.ID ||
		cc.MDSA.Citations[0].KB != "support" {
		t.Fatalf("answer without citations: %d %s", r.code, r.body)
	}
	if r := do(t, http.MethodPost, url+"/v1/query", acmeKey, map[string]any{"query": "My parcel arrived damaged, can I get a refund?", "domain": "support",
		"generation": map[string]int{"max_tokens": 4}}); !strings.Contains(string(r.body), `"citations":[{"kb":"support"`) {
		t.Fatalf("/v1/query without citations: %s", r.body)
	}

	// Mistakes are 4xx naming what is wrong.
	for _, c := range []struct {
		name, url, ctype string
		body             []byte
		code             int
		want             string
	}{
		{"unsupported type", kb + "/documents", "application/pdf", []byte("%PDF-1.4"), http.StatusUnsupportedMediaType, "application/pdf"},
		{"bad media type", kb + "/documents", "text/;;", []byte("x"), http.StatusUnsupportedMediaType, "does not parse"},
		{"too large", kb + "/documents", "text/plain", bytes.Repeat([]byte("word "), 4000), http.StatusRequestEntityTooLarge, "max_doc_kb"},
		{"bad kb name", url + "/v1/knowledge/Bad!/documents", "text/plain", []byte("x"), http.StatusBadRequest, "knowledge base name"},
		{"empty document", kb + "/documents", "text/plain", []byte("   "), http.StatusBadRequest, ""},
		{"unknown JSON field", kb + "/documents", "application/json", []byte(`{"txt":"x"}`), http.StatusBadRequest, "txt"},
		{"JSON type", kb + "/documents", "application/json", []byte(`{"text":"x","type":"pdf"}`), http.StatusUnsupportedMediaType, "pdf"},
		{"search without query", kb + "/search", "application/json", []byte(`{}`), http.StatusBadRequest, "query"},
		{"search of punctuation", kb + "/search", "application/json", []byte(`{"query":"?!"}`), http.StatusBadRequest, "query"},
		{"search top_k", kb + "/search", "application/json", []byte(`{"query":"x","top_k":500}`), http.StatusBadRequest, "top_k"},
	} {
		r := rawPost(t, c.url, acmeKey, c.ctype, c.body)
		if r.code != c.code || !strings.Contains(string(r.body), c.want) {
			t.Errorf("%s: %d %s, want %d with %q", c.name, r.code, r.body, c.code, c.want)
		}
	}
	// A tenant's knowledge bases are bounded (max_kbs_per_tenant = 2).
	if r := rawPost(t, url+"/v1/knowledge/second/documents", acmeKey, "text/plain", []byte("two")); r.code != http.StatusCreated {
		t.Fatalf("second base: %d %s", r.code, r.body)
	}
	if r := rawPost(t, url+"/v1/knowledge/third/documents", acmeKey, "text/plain", []byte("three")); r.code != http.StatusConflict ||
		!strings.Contains(string(r.body), "knowledge_limit") {
		t.Fatalf("third base: %d %s", r.code, r.body)
	}

	// Deletion removes a document from search, and a base with all its documents.
	if r := do(t, http.MethodDelete, kb+"/documents/"+doc.ID, acmeKey, nil); r.code != http.StatusOK {
		t.Fatalf("delete: %d %s", r.code, r.body)
	}
	if r := do(t, http.MethodPost, kb+"/search", acmeKey, map[string]any{"query": "photograph damaged parcel"}); strings.Contains(string(r.body), "photograph") {
		t.Fatalf("a deleted document is still found: %s", r.body)
	}
	if r := do(t, http.MethodDelete, kb, acmeKey, nil); r.code != http.StatusOK || !strings.Contains(string(r.body), `"documents":2`) {
		t.Fatalf("delete base: %d %s", r.code, r.body)
	}
}

// Without [knowledge], the endpoints say how to turn them on.
func TestKnowledgeOff(t *testing.T) {
	url := startServer(t, newServer(t, openHost(t), openConfig(t))).URL
	r := do(t, http.MethodGet, url+"/v1/knowledge", "", nil)
	if r.code != http.StatusNotFound || !strings.Contains(string(r.body), "knowledge_disabled") {
		t.Fatalf("%d %s", r.code, r.body)
	}
}
