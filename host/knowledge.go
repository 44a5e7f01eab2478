package host

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/mdsa-go/mdsa/host/plugin"
	"github.com/mdsa-go/mdsa/internal/knowledge"
	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// ErrKnowledgeOff is the error of a knowledge-base operation on a host
// without knowledge bases ([knowledge] enabled = false).
var ErrKnowledgeOff = errors.New("knowledge bases are off ([knowledge] enabled = false)")

// Citation is a passage the answer's prompt was given: which document
// and which of its chunks.
type Citation struct {
	KB       string  `json:"kb"`
	Document string  `json:"document"`
	Title    string  `json:"title"`
	Source   string  `json:"source,omitempty"`
	Chunk    int     `json:"chunk"`
	Score    float64 `json:"score"`
}

// maxKnowledgeContext bounds the passages put into a prompt's context.
const maxKnowledgeContext = 16 << 10

// knowledgeKey is the store's tenant of a host tenant: "" (the default
// space) is "_", which no configured tenant name can be.
func knowledgeKey(tenant string) string {
	if tenant == "" {
		return "_"
	}
	return tenant
}

// openKnowledge opens the knowledge store the configuration asks for.
func (h *Host) openKnowledge(ctx context.Context) error {
	kc := h.cfg.Knowledge
	if !kc.Enabled {
		return nil
	}
	o := knowledge.Options{Limits: knowledge.Limits{MaxDocBytes: kc.MaxDocKB << 10, MaxDocsPerTenant: kc.MaxDocsPerTenant,
		MaxChunksPerTenant: kc.MaxChunksPerTenant, MaxKBsPerTenant: kc.MaxKBsPerTenant, ChunkChars: kc.ChunkChars}}
	if kc.EmbedModel != "" {
		o.Embedder = kbEmbedder{h: h, model: kc.EmbedModel}
	}
	var st knowledge.Store
	var err error
	switch kc.Store {
	case "postgres":
		// The URL may hold a password: it is never part of an error.
		url := kc.URL
		if kc.URLEnv != "" {
			if url = os.Getenv(kc.URLEnv); url == "" {
				return fmt.Errorf("host: knowledge bases (knowledge.url_env in %s): environment variable %s is unset or empty", h.cfg.File, kc.URLEnv)
			}
		}
		octx, cancel := context.WithTimeout(ctx, 30*time.Second)
		st, err = knowledge.OpenPostgres(octx, url, o)
		cancel()
		if err != nil {
			return fmt.Errorf("host: knowledge bases (knowledge.store = \"postgres\" in %s): %w", h.cfg.File, err)
		}
	default:
		if st, err = knowledge.Open(ctx, h.cfg.Resolve(kc.Path), o); err != nil {
			return fmt.Errorf("host: knowledge bases (knowledge.path in %s): %w", h.cfg.File, err)
		}
	}
	h.kb = st
	return nil
}

// kbEmbedder embeds chunks and queries with the configured model, as the
// tenant of the operation (its allowed models) and counting the tokens
// (kbCall in the context).
type kbEmbedder struct {
	h     *Host
	model string
}

// kbCall is the tenant a knowledge operation runs for and the tokens its
// embeddings cost.
type kbCall struct {
	tenant string
	tokens int
}

type kbCallKey struct{}

// withKBCall returns a context for a knowledge operation of tenant.
func withKBCall(ctx context.Context, tenant string) (context.Context, *kbCall) {
	kc := &kbCall{tenant: tenant}
	return context.WithValue(ctx, kbCallKey{}, kc), kc
}

func (e kbEmbedder) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	kc, _ := ctx.Value(kbCallKey{}).(*kbCall)
	tenant := ""
	if kc != nil {
		tenant = kc.tenant
	}
	emb, err := e.h.embed(ctx, tenant, e.model, texts)
	if err != nil {
		return nil, err
	}
	if kc != nil {
		kc.tokens += emb.Tokens
	}
	return emb.Vectors, nil
}

// retrieve searches the knowledge base a plugin declares for query and
// returns the passages for its prompt context and the citations.
func (h *Host) retrieve(ctx context.Context, tenant string, spec *abi.KnowledgeSpec, query string) (string, []Citation, int, error) {
	k := spec.TopK
	if k <= 0 {
		k = 4
	}
	ctx, kc := withKBCall(ctx, tenant)
	hits, err := h.kb.Search(ctx, knowledgeKey(tenant), spec.KB, query, k)
	if err != nil {
		if errors.Is(err, knowledge.ErrNotFound) || errors.Is(err, knowledge.ErrInvalid) {
			return "", nil, kc.tokens, nil // no such base yet, or nothing searchable in the query
		}
		return "", nil, kc.tokens, err
	}
	var b strings.Builder
	cites := make([]Citation, 0, len(hits))
	for i, hit := range hits {
		block := "[" + strconv.Itoa(i+1) + "] " + hit.Title + ": " + hit.Text + "\n\n"
		if b.Len()+len(block) > maxKnowledgeContext {
			break
		}
		b.WriteString(block)
		cites = append(cites, Citation{KB: spec.KB, Document: hit.DocID, Title: hit.Title, Source: hit.Source, Chunk: hit.Chunk, Score: hit.Score})
	}
	return strings.TrimSpace(b.String()), cites, kc.tokens, nil
}

// Retrieve serves mdsa_retrieve: a search of the calling tenant's
// knowledge base.
func (s services) Retrieve(ctx context.Context, call plugin.Call, req abi.RetrieveRequest) (abi.RetrieveResponse, error) {
	if s.h.kb == nil {
		return abi.RetrieveResponse{}, &plugin.CodedError{Code: abi.ErrUnavailable, Err: ErrKnowledgeOff}
	}
	kctx, kc := withKBCall(ctx, call.Tenant)
	hits, err := s.h.kb.Search(kctx, knowledgeKey(call.Tenant), req.KB, req.Query, req.TopK)
	if u, ok := ctx.Value(usageKey).(*usage); ok {
		u.embedded += kc.tokens
	}
	switch {
	case errors.Is(err, knowledge.ErrNotFound):
		return abi.RetrieveResponse{Passages: []abi.Passage{}}, nil
	case errors.Is(err, knowledge.ErrInvalid):
		return abi.RetrieveResponse{}, &plugin.CodedError{Code: abi.ErrBadRequest, Err: err}
	case err != nil:
		return abi.RetrieveResponse{}, &plugin.CodedError{Code: abi.ErrUnavailable, Err: err}
	}
	out := abi.RetrieveResponse{Passages: make([]abi.Passage, len(hits))}
	for i, hit := range hits {
		out.Passages[i] = abi.Passage{Document: hit.DocID, Title: hit.Title, Source: hit.Source, Chunk: hit.Chunk, Text: hit.Text, Score: hit.Score}
	}
	return out, nil
}

// Knowledge bases of a tenant. Every operation is scoped to the tenant: a
// document of another tenant is knowledge.ErrNotFound, like an unknown one.

func (t *Tenant) kbStore() (knowledge.Store, error) {
	if t.h.kb == nil {
		return nil, ErrKnowledgeOff
	}
	return t.h.kb, nil
}

// AddDocument ingests a document into the tenant's knowledge base kb
// (created on first use). Tokens are what embedding its chunks cost (with
// knowledge.embed_model), to charge to the tenant.
func (t *Tenant) AddDocument(ctx context.Context, kb string, in knowledge.Input) (knowledge.Document, Tokens, error) {
	st, err := t.kbStore()
	if err != nil {
		return knowledge.Document{}, Tokens{}, err
	}
	ctx, kc := withKBCall(ctx, t.name)
	d, err := st.Add(ctx, knowledgeKey(t.name), kb, in)
	return d, Tokens{Embedded: kc.tokens}, err
}

// Document returns one of the tenant's documents.
func (t *Tenant) Document(ctx context.Context, kb, id string) (knowledge.Document, error) {
	st, err := t.kbStore()
	if err != nil {
		return knowledge.Document{}, err
	}
	return st.Get(ctx, knowledgeKey(t.name), kb, id)
}

// Documents lists the documents of the tenant's knowledge base kb, newest
// first, limit at a time, before the document id before ("" to start).
func (t *Tenant) Documents(ctx context.Context, kb string, limit int, before string) ([]knowledge.Document, error) {
	st, err := t.kbStore()
	if err != nil {
		return nil, err
	}
	return st.List(ctx, knowledgeKey(t.name), kb, limit, before)
}

// KnowledgeBases lists the tenant's knowledge bases.
func (t *Tenant) KnowledgeBases(ctx context.Context) ([]knowledge.KB, error) {
	st, err := t.kbStore()
	if err != nil {
		return nil, err
	}
	return st.KBs(ctx, knowledgeKey(t.name))
}

// DeleteDocument removes a document and its chunks.
func (t *Tenant) DeleteDocument(ctx context.Context, kb, id string) error {
	st, err := t.kbStore()
	if err != nil {
		return err
	}
	return st.Delete(ctx, knowledgeKey(t.name), kb, id)
}

// DeleteKnowledgeBase removes a knowledge base and all its documents,
// returning how many there were.
func (t *Tenant) DeleteKnowledgeBase(ctx context.Context, kb string) (int, error) {
	st, err := t.kbStore()
	if err != nil {
		return 0, err
	}
	return st.DeleteKB(ctx, knowledgeKey(t.name), kb)
}

// SearchKnowledge returns the k passages of the tenant's knowledge base kb
// that best match query, and what embedding the query cost.
func (t *Tenant) SearchKnowledge(ctx context.Context, kb, query string, k int) ([]knowledge.Hit, Tokens, error) {
	st, err := t.kbStore()
	if err != nil {
		return nil, Tokens{}, err
	}
	ctx, kc := withKBCall(ctx, t.name)
	hits, err := st.Search(ctx, knowledgeKey(t.name), kb, query, k)
	return hits, Tokens{Embedded: kc.tokens}, err
}
