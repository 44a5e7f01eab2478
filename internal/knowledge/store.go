package knowledge

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Store keeps knowledge bases, safe for concurrent use. Every method takes
// the tenant that owns what it touches and never sees another tenant's.
// Open returns the SQLite Store, OpenPostgres the PostgreSQL one; both
// behave alike but for the lexical ranking (see Search).
type Store interface {
	// Add stores a document in the tenant's knowledge base kb, creating
	// the knowledge base if it is new. The body is extracted according to
	// in.Type, split into chunks, embedded when the Store has an Embedder
	// (before the database is touched), and stored with its chunks and
	// their vectors in one transaction: a failed Add stores nothing.
	// Errors: ErrInvalid, ErrUnsupportedType, ErrTooLarge, and ErrLimit (a
	// *LimitError) when the tenant would exceed a limit or the document
	// would yield more chunks than a document may.
	Add(ctx context.Context, tenant, kb string, in Input) (Document, error)
	// Get returns the tenant's document id in knowledge base kb, or
	// ErrNotFound (for unknown, malformed or another tenant's ids).
	Get(ctx context.Context, tenant, kb, id string) (Document, error)
	// List returns the documents of the tenant's knowledge base kb, newest
	// first, at most limit of them (below 1: DefaultListLimit; capped at
	// MaxListLimit). before, when not empty, is the last id of the
	// previous page: the page starts after it. An unknown knowledge base
	// or before gives ErrNotFound.
	List(ctx context.Context, tenant, kb string, limit int, before string) ([]Document, error)
	// KBs returns the tenant's knowledge bases, by name.
	KBs(ctx context.Context, tenant string) ([]KB, error)
	// Delete removes the tenant's document id from knowledge base kb, with
	// its chunks and vectors, or returns ErrNotFound. The knowledge base
	// stays, even when empty.
	Delete(ctx context.Context, tenant, kb, id string) error
	// DeleteKB removes the tenant's knowledge base kb with all its
	// documents, and returns how many documents it held, or ErrNotFound.
	DeleteKB(ctx context.Context, tenant, kb string) (int, error)
	// Search returns the k (1..MaxK) chunks of the tenant's knowledge base
	// kb most relevant to query, best first. The query is untrusted text:
	// it is cut into at most MaxQueryTerms words (see queryTerms), any of
	// which may match; a query with no word is ErrInvalid. Chunks are
	// ranked lexically: by BM25 in the SQLite store (Hit.Score is the
	// negated BM25 score), by PostgreSQL's ts_rank_cd in the PostgreSQL
	// store (Hit.Score is that rank). With an Embedder, they are also
	// ranked by the cosine similarity of their vectors to the query's,
	// and the top 100 of both rankings are fused by reciprocal rank
	// fusion with k = 60 (Hit.Score is the fused score, the sum of
	// 1/(60+rank) over the rankings that found the chunk). An unknown
	// knowledge base is ErrNotFound; an Embedder's failure fails the
	// search.
	Search(ctx context.Context, tenant, kb, query string, k int) ([]Hit, error)
	// Close releases the database. The Store must not be used afterwards.
	Close() error
}

// core is what both stores share: the limits, the embedder, the clock and
// the vector cache, and the work that is not storage (extraction,
// chunking, embedding, limit checks, ranking and fusion).
type core struct {
	limits   Limits
	embedder Embedder
	now      func() time.Time
	vectors  *vecCache
}

// newCore checks o and fills its defaults.
func newCore(o Options) (core, error) {
	limits, err := o.Limits.withDefaults()
	if err != nil {
		return core{}, fmt.Errorf("knowledge: open: %w", err)
	}
	cacheFloats := o.VectorCacheFloats
	if cacheFloats == 0 {
		cacheFloats = DefaultVectorCacheFloats
	}
	c := core{limits: limits, embedder: o.Embedder, now: o.Now, vectors: newVecCache(cacheFloats)}
	if c.now == nil {
		c.now = time.Now
	}
	return c, nil
}

// fromNano turns stored Unix nanoseconds back into a time.
func fromNano(n int64) time.Time { return time.Unix(0, n).UTC() }

// checkMeta validates and cleans a title or source: valid UTF-8, at most
// max bytes; control characters become spaces, and white space is
// collapsed.
func checkMeta(field, v string, max int) (string, error) {
	if len(v) > max {
		return "", fmt.Errorf("%w: %s is %d bytes, longer than %d", ErrInvalid, field, len(v), max)
	}
	if !utf8.ValidString(v) {
		return "", fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalid, field)
	}
	v = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, v)
	return collapseSpace(v), nil
}

// prepared is a document ready to be stored.
type prepared struct {
	typ, title, source string
	chunks             []string
}

// prepare checks a document against l, extracts its text and splits it
// into chunks.
func prepare(l Limits, in Input) (prepared, error) {
	var p prepared
	var err error
	if p.typ, err = normType(in.Type); err != nil {
		return p, err
	}
	if p.title, err = checkMeta("title", in.Title, MaxTitleLen); err != nil {
		return p, err
	}
	if p.source, err = checkMeta("source", in.Source, MaxSourceLen); err != nil {
		return p, err
	}
	switch {
	case len(in.Body) == 0:
		return p, fmt.Errorf("%w: empty body", ErrInvalid)
	case len(in.Body) > l.MaxDocBytes:
		return p, fmt.Errorf("%w: body is %d bytes, more than MaxDocBytes %d", ErrTooLarge, len(in.Body), l.MaxDocBytes)
	}
	ex, err := extract(p.typ, in.Body)
	if err != nil {
		return p, err
	}
	if p.title == "" {
		p.title = ex.title
	}
	maxChunks := l.maxChunksPerDoc()
	if p.chunks = chunkSections(ex.sections, l.ChunkChars, maxChunks); p.chunks == nil {
		return p, &LimitError{Which: "chunks per document", Limit: maxChunks, Adding: maxChunks + 1}
	}
	return p, nil
}

// ingest is a document ready for a store's transaction: its row (without
// ID and Created), its chunks and, with an Embedder, their vectors.
type ingest struct {
	doc    Document
	chunks []string
	vecs   [][]float32
}

// prepareAdd does all of Add that comes before the database: it checks
// the scope and the document, extracts, chunks and embeds it. Its errors
// are Add's.
func (c *core) prepareAdd(ctx context.Context, tenant, kb string, in Input) (ingest, error) {
	if err := checkScope(tenant, kb); err != nil {
		return ingest{}, fmt.Errorf("knowledge: add: %w", err)
	}
	p, err := prepare(c.limits, in)
	if err != nil {
		return ingest{}, fmt.Errorf("knowledge: add: %w", err)
	}
	var vecs [][]float32
	if c.embedder != nil {
		if vecs, err = embed(ctx, c.embedder, p.chunks); err != nil {
			return ingest{}, fmt.Errorf("knowledge: add: %w", err)
		}
	}
	return ingest{
		doc:    Document{KB: kb, Title: p.title, Source: p.source, Type: p.typ, Bytes: len(in.Body), Chunks: len(p.chunks)},
		chunks: p.chunks,
		vecs:   vecs,
	}, nil
}

// tenantUsage is what a tenant keeps, as the limits count it, and whether
// it has the knowledge base an Add is for.
type tenantUsage struct {
	kbs, docs, chunks int
	hasKB             bool
}

// checkAdd returns a *LimitError when adding a document of chunks chunks
// to a tenant that keeps u would exceed a limit.
func (l Limits) checkAdd(u tenantUsage, chunks int) error {
	switch {
	case !u.hasKB && u.kbs >= l.MaxKBsPerTenant:
		return &LimitError{Which: "MaxKBsPerTenant", Limit: l.MaxKBsPerTenant, Have: u.kbs, Adding: 1}
	case u.docs+1 > l.MaxDocsPerTenant:
		return &LimitError{Which: "MaxDocsPerTenant", Limit: l.MaxDocsPerTenant, Have: u.docs, Adding: 1}
	case u.chunks+chunks > l.MaxChunksPerTenant:
		return &LimitError{Which: "MaxChunksPerTenant", Limit: l.MaxChunksPerTenant, Have: u.chunks, Adding: chunks}
	}
	return nil
}

// listLimit is the page size List uses for limit.
func listLimit(limit int) int {
	switch {
	case limit < 1:
		return DefaultListLimit
	case limit > MaxListLimit:
		return MaxListLimit
	}
	return limit
}
