// Package knowledge keeps the knowledge bases of MDSA's tenants: named
// collections of documents (plain text, Markdown or HTML) that are split
// into chunks and searched by relevance to a question.
//
// A Store keeps them in an embedded SQLite database (Open;
// github.com/ncruces/go-sqlite3, pure Go, no cgo, with its FTS5 extension),
// or in a PostgreSQL database that several replicas of MDSA share
// (OpenPostgres; github.com/jackc/pgx/v5). Both behave alike, and share
// everything that is not storage. Add extracts a document's visible text,
// splits it into sections by its headings and packs each section's
// paragraphs into chunks of about Limits.ChunkChars characters, each chunk
// starting with its section's heading path ("Fees > Cash machines: ...")
// so that it reads on its own. Search ranks chunks lexically, by BM25 over
// an FTS5 full-text index in SQLite, by ts_rank_cd over a tsvector column
// in PostgreSQL (see postgres.go for how the two compare); with an
// Embedder it also ranks them by the cosine similarity of their embeddings
// to the question's, and fuses the two rankings (reciprocal rank fusion).
//
// Isolation: every statement made for a tenant is parameterised and scoped
// by tenant and knowledge base in its WHERE clause (by tenant alone where
// it is about all of the tenant's knowledge bases: KBs, and the counts
// that enforce Limits); in SQLite the full-text query is further confined
// by a per-(tenant, knowledge base) token, and the question's text never
// reaches a query language (FTS5's MATCH, PostgreSQL's tsquery) as it
// came: it is cut into words, each quoted. A tenant can neither read,
// list, search nor delete another tenant's documents, and asking for one
// reads exactly like asking for one that does not exist (ErrNotFound). One
// thing is shared in SQLite: BM25's term statistics (how many chunks hold
// a word, and their average length) are those of the whole index, so other
// tenants' content nudges the scores, and with them the order, of a
// tenant's own chunks; never which tenant's chunks are found.
// (PostgreSQL's ts_rank_cd uses no statistics beyond the chunk itself.)
package knowledge

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mdsa-go/mdsa/internal/sqlitedb"
)

// ErrNotFound is returned for a document or knowledge base the tenant does
// not have: it never existed, was deleted, the id is malformed, or it
// belongs to another tenant (which is deliberately not told apart).
var ErrNotFound = errors.New("knowledge: not found")

// ErrLimit is returned, as a *LimitError, when an Add would take a tenant
// over one of its Limits. Nothing is stored when it is returned.
var ErrLimit = errors.New("knowledge: limit exceeded")

// ErrInvalid is returned for malformed input: a bad tenant or knowledge base
// name, a malformed Type, an empty body, a body without valid UTF-8 text
// once extracted, an over-long title or source, a k out of range, or a
// query with no word to search for.
var ErrInvalid = errors.New("knowledge: invalid input")

// ErrUnsupportedType is returned by Add for a well-formed Input.Type that is
// none of TypeText, TypeMarkdown and TypeHTML (or their MIME types).
var ErrUnsupportedType = errors.New("knowledge: unsupported document type")

// ErrTooLarge is returned by Add for a body longer than Limits.MaxDocBytes.
var ErrTooLarge = errors.New("knowledge: document too large")

// LimitError tells which limit an operation would exceed. errors.Is matches
// it with ErrLimit.
type LimitError struct {
	// Which names the limit: the Limits field ("MaxDocsPerTenant",
	// "MaxChunksPerTenant", "MaxKBsPerTenant"), or "chunks per document".
	Which string
	// Limit is the limit's value.
	Limit int
	// Have is how many the tenant (or document) has, and Adding how many the
	// operation would add.
	Have, Adding int
}

// Error implements error.
func (e *LimitError) Error() string {
	return fmt.Sprintf("knowledge: limit exceeded: %s is %d; have %d, adding %d", e.Which, e.Limit, e.Have, e.Adding)
}

// Is makes errors.Is(err, ErrLimit) true for a *LimitError.
func (e *LimitError) Is(target error) bool { return target == ErrLimit }

// Document types accepted by Input.Type.
const (
	// TypeText is plain text (also "text/plain", and the default for "").
	TypeText = "text"
	// TypeMarkdown is Markdown (also "md", "text/markdown", "text/x-markdown").
	TypeMarkdown = "markdown"
	// TypeHTML is HTML (also "htm", "text/html", "application/xhtml+xml").
	TypeHTML = "html"
)

// Defaults of the Limits fields left zero.
const (
	// DefaultMaxDocBytes is the default Limits.MaxDocBytes, 1 MiB.
	DefaultMaxDocBytes = 1 << 20
	// DefaultMaxDocsPerTenant is the default Limits.MaxDocsPerTenant.
	DefaultMaxDocsPerTenant = 10000
	// DefaultMaxChunksPerTenant is the default Limits.MaxChunksPerTenant.
	DefaultMaxChunksPerTenant = 200000
	// DefaultMaxKBsPerTenant is the default Limits.MaxKBsPerTenant.
	DefaultMaxKBsPerTenant = 100
	// DefaultChunkChars is the default Limits.ChunkChars.
	DefaultChunkChars = 1000
	// MinChunkChars is the smallest ChunkChars accepted.
	MinChunkChars = 32
	// DefaultVectorCacheFloats is the default of Options.VectorCacheFloats:
	// 64 Mi floats, 256 MiB.
	DefaultVectorCacheFloats = 64 << 20
)

// Bounds on names and metadata.
const (
	// MaxTenantLen is the longest tenant name accepted, in bytes.
	MaxTenantLen = 256
	// MaxTitleLen is the longest Input.Title accepted, in bytes; a title
	// taken from the document is cut to MaxTitleRunes characters.
	MaxTitleLen = 1024
	// MaxTitleRunes is the longest title taken from a document's text.
	MaxTitleRunes = 200
	// MaxSourceLen is the longest Input.Source accepted, in bytes.
	MaxSourceLen = 2048
	// MaxK is the most hits Search returns.
	MaxK = 50
	// MaxQueryLen is the longest query accepted, in bytes.
	MaxQueryLen = 8192
	// MaxQueryTerms is the most words of a query searched for.
	MaxQueryTerms = 32
	// DefaultListLimit is the page size List uses when asked for less
	// than 1.
	DefaultListLimit = 20
	// MaxListLimit is the largest page List returns; larger limits are
	// capped.
	MaxListLimit = 100
)

// IDPrefix starts every document id; 24 lowercase hex digits follow.
const IDPrefix = "doc_"

// idHexLen is the number of hex digits after IDPrefix (12 random bytes).
const idHexLen = 24

// Limits bounds what a Store keeps. A zero field takes its default; a
// negative one is refused by Open and OpenPostgres.
type Limits struct {
	// MaxDocBytes is the largest body of one document, in bytes (default
	// 1 MiB). Add returns ErrTooLarge beyond it.
	MaxDocBytes int
	// MaxDocsPerTenant is the most documents a tenant keeps over all its
	// knowledge bases (default 10000).
	MaxDocsPerTenant int
	// MaxChunksPerTenant is the most chunks a tenant keeps over all its
	// knowledge bases (default 200000).
	MaxChunksPerTenant int
	// MaxKBsPerTenant is the most knowledge bases a tenant keeps (default
	// 100).
	MaxKBsPerTenant int
	// ChunkChars is the target size of a chunk, in characters (default
	// 1000, at least MinChunkChars). A document yields at most
	// ceil(MaxDocBytes/ChunkChars)*2 chunks.
	ChunkChars int
}

// withDefaults fills the zero fields of l and refuses negative or too small
// ones.
func (l Limits) withDefaults() (Limits, error) {
	fields := []struct {
		name string
		v    *int
		def  int
	}{
		{"MaxDocBytes", &l.MaxDocBytes, DefaultMaxDocBytes},
		{"MaxDocsPerTenant", &l.MaxDocsPerTenant, DefaultMaxDocsPerTenant},
		{"MaxChunksPerTenant", &l.MaxChunksPerTenant, DefaultMaxChunksPerTenant},
		{"MaxKBsPerTenant", &l.MaxKBsPerTenant, DefaultMaxKBsPerTenant},
		{"ChunkChars", &l.ChunkChars, DefaultChunkChars},
	}
	for _, f := range fields {
		switch {
		case *f.v < 0:
			return l, fmt.Errorf("knowledge: Limits.%s is negative (%d)", f.name, *f.v)
		case *f.v == 0:
			*f.v = f.def
		}
	}
	if l.ChunkChars < MinChunkChars {
		return l, fmt.Errorf("knowledge: Limits.ChunkChars %d is below the minimum %d", l.ChunkChars, MinChunkChars)
	}
	return l, nil
}

// maxChunksPerDoc is the most chunks one document may yield:
// ceil(MaxDocBytes/ChunkChars)*2.
func (l Limits) maxChunksPerDoc() int {
	return 2 * ((l.MaxDocBytes + l.ChunkChars - 1) / l.ChunkChars)
}

// Embedder turns texts into embedding vectors, one per text, all of the same
// dimension. It must be safe for concurrent use.
type Embedder interface {
	// Embed returns the vectors of texts, in order.
	Embed(ctx context.Context, texts []string) ([][]float32, error)
}

// Options configures Open and OpenPostgres.
type Options struct {
	// Limits bounds what the Store keeps.
	Limits Limits
	// Embedder, when set, embeds chunk texts at ingest and queries at
	// search (vectors + hybrid ranking); nil = lexical ranking only.
	Embedder Embedder
	// Now is the source of time for Created and Updated; nil = time.Now.
	// Meant for tests.
	Now func() time.Time
	// VectorCacheFloats bounds the in-memory cache of the knowledge bases'
	// vectors, in float32s over all cached knowledge bases (0 =
	// DefaultVectorCacheFloats, negative = no cache). A knowledge base
	// whose vectors do not fit is searched straight from the database. The
	// cache is per Store. The SQLite store's is invalidated by its own
	// writes: it assumes no other process writes to the database. The
	// PostgreSQL store's entries are checked against a version of each
	// knowledge base kept in the database, which every write moves on, so
	// replicas never search vectors older than the version they read.
	VectorCacheFloats int
}

// Input is a document to add.
type Input struct {
	// Title names the document; empty = taken from the document: the HTML
	// <title>, else its first heading, else its first line.
	Title string
	// Source says where the document came from (a URL, a file name); it is
	// stored and returned, never interpreted.
	Source string
	// Type is TypeText, TypeMarkdown or TypeHTML (or one of their MIME
	// types, any case; parameters such as "; charset=utf-8" are ignored);
	// empty = TypeText.
	Type string
	// Body is the document, UTF-8, at most Limits.MaxDocBytes bytes.
	Body []byte
}

// Document describes a stored document.
type Document struct {
	// ID is the document id, IDPrefix followed by 24 hex digits.
	ID string `json:"id"`
	// KB is the knowledge base holding it.
	KB string `json:"kb"`
	// Title is the document's title.
	Title string `json:"title"`
	// Source is Input.Source.
	Source string `json:"source,omitempty"`
	// Type is the document's type, TypeText, TypeMarkdown or TypeHTML.
	Type string `json:"type"`
	// Bytes is the size of the body as added.
	Bytes int `json:"bytes"`
	// Chunks is how many chunks the document was split into.
	Chunks int `json:"chunks"`
	// Created is when the document was added.
	Created time.Time `json:"created"`
}

// KB describes a knowledge base.
type KB struct {
	// Name is the knowledge base's name (see ValidKB).
	Name string `json:"name"`
	// Documents, Chunks and Bytes sum its documents'.
	Documents int   `json:"documents"`
	Chunks    int   `json:"chunks"`
	Bytes     int64 `json:"bytes"`
	// Updated is when a document was last added or deleted.
	Updated time.Time `json:"updated"`
}

// Hit is one chunk found by Search.
type Hit struct {
	// DocID, Title and Source are the chunk's document's.
	DocID  string `json:"doc_id"`
	Title  string `json:"title"`
	Source string `json:"source,omitempty"`
	// Chunk is the chunk's 0-based index within its document.
	Chunk int `json:"chunk"`
	// Text is the chunk's text, starting with its section heading path.
	Text string `json:"text"`
	// Score orders the hits, higher = better: without an Embedder, the
	// negated BM25 score (SQLite) or the ts_rank_cd rank (PostgreSQL);
	// with one, the fused reciprocal-rank score.
	Score float64 `json:"score"`
	// Lexical and Semantic are the chunk's 1-based ranks in the lexical
	// (BM25 or ts_rank_cd) and vector rankings, 0 when that ranking did
	// not find it.
	Lexical  int `json:"lexical,omitempty"`
	Semantic int `json:"semantic,omitempty"`
}

// ValidKB reports whether name is a valid knowledge base name:
// [a-z0-9][a-z0-9_-]{0,63}.
func ValidKB(name string) bool {
	if len(name) < 1 || len(name) > 64 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// newID returns a fresh random document id.
func newID() (string, error) {
	id, err := sqlitedb.NewID(IDPrefix)
	if err != nil {
		return "", fmt.Errorf("knowledge: %w", err)
	}
	return id, nil
}

// validID reports whether id has the form of a document id: IDPrefix and
// 24 lowercase hex digits.
func validID(id string) bool { return sqlitedb.ValidID(id, IDPrefix) }

// checkTenant validates a tenant name.
func checkTenant(tenant string) error {
	if err := sqlitedb.CheckTenant(tenant, MaxTenantLen); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

// checkScope validates a tenant and a knowledge base name.
func checkScope(tenant, kb string) error {
	if err := checkTenant(tenant); err != nil {
		return err
	}
	if !ValidKB(kb) {
		return fmt.Errorf("%w: knowledge base name %q is not [a-z0-9][a-z0-9_-]{0,63}", ErrInvalid, truncate(kb, 80))
	}
	return nil
}

// normType maps Input.Type to one of the Type constants.
func normType(t string) (string, error) {
	if i := strings.IndexByte(t, ';'); i >= 0 {
		t = t[:i] // MIME parameters
	}
	t = strings.ToLower(strings.TrimSpace(t))
	switch t {
	case "", TypeText, "txt", "plain", "text/plain":
		return TypeText, nil
	case TypeMarkdown, "md", "text/markdown", "text/x-markdown":
		return TypeMarkdown, nil
	case TypeHTML, "htm", "text/html", "application/xhtml+xml":
		return TypeHTML, nil
	}
	if len(t) > 100 {
		return "", fmt.Errorf("%w: type is longer than 100 bytes", ErrInvalid)
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && !strings.ContainsRune("/.+-_", rune(c)) {
			return "", fmt.Errorf("%w: type %q is malformed", ErrInvalid, truncate(t, 100))
		}
	}
	return "", fmt.Errorf("%w: %q (want %s, %s or %s)", ErrUnsupportedType, t, TypeText, TypeMarkdown, TypeHTML)
}

// truncate cuts s to at most n bytes, on a rune boundary, for messages.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
