package host

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/mdsa-go/mdsa/host/config"
	"github.com/mdsa-go/mdsa/internal/testutil"
)

// TestRouterEmbeddingStage routes with router.embed_model set: the router
// embeds every example through llama.cpp at New (so the model is loaded
// before any request) and each query at Route.
func TestRouterEmbeddingStage(t *testing.T) {
	cfg := testConfig(t, fixture.pluginsDir)
	cfg.Engine.LibDir = testutil.LlamaLibDir(t)
	cfg.Host.ModelsDir = filepath.Dir(fixture.modelPath)
	cfg.Models = map[string]config.Model{"tiny": {Tier: "domain", Variants: map[string]config.Variant{
		"Q4_0": {Path: filepath.Base(fixture.modelPath)}}}}
	cfg.Router.EmbedModel = "tiny"
	cfg.Router.Background = false // fewer texts to embed
	h, err := New(context.Background(), cfg, WithLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if st := h.ModelStats(); st.Loads != 1 {
		t.Fatalf("the embedding model was not loaded to embed the examples: %+v", st)
	}
	d := h.Route(context.Background(), "I was charged twice for my order, can I get a refund?")
	if d.Domain != "support" {
		t.Fatalf("with the embedding stage: %+v", d)
	}
	if st := h.ModelStats(); st.Hits < 1 {
		t.Fatalf("the query was not embedded: %+v", st)
	}
}
