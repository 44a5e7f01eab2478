package host

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mdsa-go/mdsa/host/config"
	"github.com/mdsa-go/mdsa/internal/knowledge"
	"github.com/mdsa-go/mdsa/internal/testutil"
)

// A plugin that declares a knowledge base gets the tenant's passages in its
// context, cited in the result, and finds them itself through
// mdsa_retrieve; another tenant's notes are never among them.
func TestKnowledgeForPlugins(t *testing.T) {
	dir := t.TempDir()
	if err := testutil.BuildPlugin("host/testdata/retriever", filepath.Join(dir, "retriever.wasm")); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, dir)
	cfg.Knowledge.Enabled = true
	cfg.Knowledge.Path = filepath.Join(t.TempDir(), "kb.db")
	hash := "sha256:" + strings.Repeat("0", 64)
	cfg.Tenants = []config.Tenant{{Name: "other", APIKeys: []string{hash}, Plugins: []string{"retriever"}}}
	h, err := New(context.Background(), cfg, WithLogger(quietLogger()), WithEngine(&fakeEngine{}))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ctx := context.Background()
	mine, err := h.Tenant("")
	if err != nil {
		t.Fatal(err)
	}
	other, err := h.Tenant("other")
	if err != nil {
		t.Fatal(err)
	}
	add := func(tn *Tenant, kb, title, body string) knowledge.Document {
		d, _, err := tn.AddDocument(ctx, kb, knowledge.Input{Title: title, Type: knowledge.TypeText, Body: []byte(body)})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	d := add(mine, "notes", "Boiler", "The boiler service is due every March; the engineer is called Sam.")
	add(mine, "notes", "Car", "The car insurance renews in July.")
	add(mine, "recipes", "Bread", "Knead the dough for ten minutes.")
	add(other, "notes", "Secret", "The boiler code of the other tenant is 1234.")

	res, err := mine.Process(ctx, Request{Query: "when is the boiler service due?", Domain: "retriever"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(res.Response, "retrieved=Boiler") || !strings.Contains(res.Response, "context=[1] Boiler: ") ||
		strings.Contains(res.Response, "Secret") || strings.Contains(res.Response, "1234") {
		t.Fatalf("response %q", res.Response)
	}
	if len(res.Citations) == 0 || res.Citations[0].Document != d.ID || res.Citations[0].KB != "notes" || res.Timings.Retrieve <= 0 {
		t.Fatalf("citations %+v, retrieve %s", res.Citations, res.Timings.Retrieve)
	}
	// Another base of the same tenant, by name.
	res, err = mine.Process(ctx, Request{Query: "how long to knead dough", Domain: "retriever", Context: map[string]string{"kb": "recipes"}})
	if err != nil || !strings.HasPrefix(res.Response, "retrieved=Bread") {
		t.Fatalf("%q %v", res.Response, err)
	}
	// The other tenant sees only its own.
	res, err = other.Process(ctx, Request{Query: "boiler", Domain: "retriever"})
	if err != nil || !strings.HasPrefix(res.Response, "retrieved=Secret |") {
		t.Fatalf("other tenant: %q %v", res.Response, err)
	}
	// A base that does not exist: nothing found, no error.
	res, err = other.Process(ctx, Request{Query: "boiler", Domain: "retriever", Context: map[string]string{"kb": "recipes"}})
	if err != nil || !strings.HasPrefix(res.Response, "retrieved= |") {
		t.Fatalf("missing base: %q %v", res.Response, err)
	}
}

// embedEngine embeds texts as word-hash vectors and counts words as
// tokens.
type embedEngine struct{ fakeEngine }

func (*embedEngine) Embed(_ context.Context, texts []string) ([][]float32, error) {
	out := make([][]float32, len(texts))
	for i, s := range texts {
		v := make([]float32, 16)
		for _, w := range strings.Fields(strings.ToLower(s)) {
			h := 0
			for _, c := range w {
				h = h*31 + int(c)
			}
			v[(h%16+16)%16]++
		}
		out[i] = v
	}
	return out, nil
}

// With an embedding model, ingestion and search embed as the tenant and
// the tokens are counted, to be charged to it.
func TestKnowledgeEmbeddingsCharged(t *testing.T) {
	cfg := testConfig(t, fixture.pluginsDir)
	cfg.Knowledge.Enabled = true
	cfg.Knowledge.Path = filepath.Join(t.TempDir(), "kb.db")
	cfg.Knowledge.EmbedModel = "emb"
	cfg.Models = map[string]config.Model{"emb": {Tier: "router", Variants: map[string]config.Variant{"Q8_0": {Path: fixture.modelPath}}}}
	h, err := New(context.Background(), cfg, WithLogger(quietLogger()), WithEngine(&embedEngine{}))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	tn, err := h.Tenant("")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, used, err := tn.AddDocument(ctx, "notes", knowledge.Input{Type: knowledge.TypeText, Body: []byte("The boiler service is due every March.")})
	if err != nil || used.Embedded <= 0 {
		t.Fatalf("ingest: %+v %v", used, err)
	}
	hits, used, err := tn.SearchKnowledge(ctx, "notes", "boiler service", 3)
	if err != nil || len(hits) != 1 || hits[0].Semantic != 1 || used.Embedded != 2 {
		t.Fatalf("search: %+v, %+v, %v", hits, used, err)
	}
}

// [knowledge] store = "postgres": two hosts on one database, as two
// replicas, share the knowledge bases; the URL comes from url_env.
func TestKnowledgePostgres(t *testing.T) {
	url := testutil.StartPostgres(t)
	cfg := testConfig(t, fixture.pluginsDir)
	cfg.Knowledge.Enabled = true
	cfg.Knowledge.Store = "postgres"
	cfg.Knowledge.URLEnv = "MDSA_TEST_KNOWLEDGE_URL"
	cfg.Knowledge.MaxDocsPerTenant = 2
	if _, err := New(context.Background(), cfg, WithLogger(quietLogger()), WithEngine(&fakeEngine{})); err == nil ||
		!strings.Contains(err.Error(), "knowledge.url_env") || !strings.Contains(err.Error(), "MDSA_TEST_KNOWLEDGE_URL") {
		t.Fatalf("New without the variable = %v", err)
	}
	t.Setenv("MDSA_TEST_KNOWLEDGE_URL", url)
	var tenants []*Tenant
	for range 2 {
		h, err := New(context.Background(), cfg, WithLogger(quietLogger()), WithEngine(&fakeEngine{}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		tn, err := h.Tenant("")
		if err != nil {
			t.Fatal(err)
		}
		tenants = append(tenants, tn)
	}
	ctx := context.Background()
	d, _, err := tenants[0].AddDocument(ctx, "notes", knowledge.Input{Title: "Boiler", Body: []byte("The boiler service is due every March.")})
	if err != nil {
		t.Fatal(err)
	}
	hits, _, err := tenants[1].SearchKnowledge(ctx, "notes", "boiler service", 3)
	if err != nil || len(hits) != 1 || hits[0].DocID != d.ID {
		t.Fatalf("search from the other host: %+v, %v", hits, err)
	}
	if _, _, err := tenants[1].AddDocument(ctx, "notes", knowledge.Input{Body: []byte("second")}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := tenants[0].AddDocument(ctx, "other", knowledge.Input{Body: []byte("third")}); !errors.Is(err, knowledge.ErrLimit) {
		t.Fatalf("third document over both hosts = %v, want ErrLimit", err)
	}
}
