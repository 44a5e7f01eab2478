package knowledge

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mdsa-go/mdsa/internal/pgdb"
)

// The PostgreSQL store.
//
// Lexical search. Each chunk has a tsvector column, tsv, with a GIN
// index. It is not a generated column of the text: Add computes it as
// to_tsvector('knowledge_english', indexText(text)), the chunk's words cut
// and folded in Go exactly as a query's are (queryTerms, foldWord), then
// stemmed by PostgreSQL. knowledge_english is a text search configuration
// of this package (made by the first migration): PostgreSQL's default
// parser, and the Snowball English stemmer for words, without a stop-word
// list; numbers are kept as they are. So the store behaves like the SQLite
// one, whose FTS5 index uses the Porter stemmer and unicode61 tokenizer
// with remove_diacritics: "withdrawals" finds "withdrawing", "cafés"
// finds "cafe", a stop word is searchable when it is all a query holds
// ("NOT"), and words are split where a query's are (PostgreSQL's own
// parser would keep "example.com" or "a-b" as tokens of their own, and the
// built-in 'english' configuration drops stop words and folds no
// diacritics, which needs the unaccent extension). Nothing depends on the
// database's locale or on an extension.
//
// A search ORs the query's terms into a tsquery, built in Go from the
// terms (tsQuery) and passed to to_tsquery as a parameter, and ranks the
// matching chunks of the knowledge base by ts_rank_cd(tsv, query, 1):
// cover density, the number and closeness of the query's words in the
// chunk, divided by 1 + the logarithm of the chunk's length. That is not
// BM25: there is no inverse document frequency, so a chunk that repeats
// a common word of the query can rank above one holding its one rare word
// once, and term frequency is not saturated. The stop words queryTerms
// drops, and the chunks being of about one size, make up for much of it
// in practice, but rankings differ from the SQLite store's, and the
// scores are on another scale (Hit.Score). In exchange nothing is shared
// between tenants: a chunk's rank depends on the chunk and the query
// alone. With an Embedder, fusion with the vector ranking is the same in
// both stores.
//
// Replicas. Several stores, in one process or in several replicas, may
// share the database. Add serialises the additions of a tenant with a
// transaction-scoped advisory lock, so that each counts what the one
// before it committed and the Limits hold across replicas. Every write
// to a knowledge base (Add, Delete, DeleteKB) first locks its row in
// knowledge_kbs, so writes of a knowledge base take turns, in one order
// (no deadlock), and the row's counts stay exact. Each write also gives
// the knowledge base a new version, drawn from the sequence
// knowledge_version (never reused, not even by a knowledge base deleted
// and made again); the vector cache of each store keeps a knowledge base's
// vectors with the version they were read at, in one snapshot, and a
// search uses them only while the knowledge base is at that version, so
// that no replica searches vectors another replica has changed.

// pgLockClass is the first key of this package's advisory locks, "mdkb" in
// ASCII, so that they do not collide with other users of the database
// (convstore's is "mdsa"). The second key is a hash of the tenant, or 0
// for the schema.
const pgLockClass = 0x6d646b62

// pgMigrations are the PostgreSQL schema versions, in order:
// pgMigrations[i] moves the database from knowledge_schema.version i to
// i+1. Append, never edit. The tables mirror the SQLite ones, named
// knowledge_* to share a database with other stores; ids, tenants and
// names compare bytewise (COLLATE "C"), as in SQLite.
var pgMigrations = []string{
	// 1: the text search configuration, knowledge bases, documents,
	// chunks with their tsvectors, and vectors.
	`CREATE SEQUENCE knowledge_version;
	CREATE TEXT SEARCH DICTIONARY knowledge_english_stem (TEMPLATE = pg_catalog.snowball, LANGUAGE = english);
	CREATE TEXT SEARCH CONFIGURATION knowledge_english (PARSER = pg_catalog."default");
	ALTER TEXT SEARCH CONFIGURATION knowledge_english
		ADD MAPPING FOR asciiword, word, numword, asciihword, hword, numhword, hword_asciipart, hword_part, hword_numpart
		WITH knowledge_english_stem;
	ALTER TEXT SEARCH CONFIGURATION knowledge_english
		ADD MAPPING FOR int, uint, float, sfloat, version
		WITH pg_catalog.simple;
	CREATE TABLE knowledge_kbs (
		tenant    text    COLLATE "C" NOT NULL,
		name      text    COLLATE "C" NOT NULL,
		created   bigint  NOT NULL, -- Unix nanoseconds
		updated   bigint  NOT NULL, -- Unix nanoseconds
		documents integer NOT NULL DEFAULT 0,
		chunks    integer NOT NULL DEFAULT 0,
		bytes     bigint  NOT NULL DEFAULT 0,
		version   bigint  NOT NULL, -- from knowledge_version, new at each write
		PRIMARY KEY (tenant, name)
	);
	CREATE TABLE knowledge_documents (
		id      text    COLLATE "C" NOT NULL PRIMARY KEY,
		tenant  text    COLLATE "C" NOT NULL,
		kb      text    COLLATE "C" NOT NULL,
		title   text    NOT NULL,
		source  text    NOT NULL,
		type    text    NOT NULL,
		bytes   integer NOT NULL,
		chunks  integer NOT NULL,
		created bigint  NOT NULL, -- Unix nanoseconds
		FOREIGN KEY (tenant, kb) REFERENCES knowledge_kbs (tenant, name) ON DELETE CASCADE
	);
	CREATE INDEX knowledge_documents_kb_created ON knowledge_documents (tenant, kb, created, id);
	CREATE TABLE knowledge_chunks (
		id     bigint   GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		tenant text     COLLATE "C" NOT NULL,
		kb     text     COLLATE "C" NOT NULL,
		doc_id text     COLLATE "C" NOT NULL REFERENCES knowledge_documents (id) ON DELETE CASCADE,
		seq    integer  NOT NULL, -- 0-based within the document
		text   text     NOT NULL,
		tsv    tsvector NOT NULL, -- to_tsvector('knowledge_english', indexText(text))
		UNIQUE (doc_id, seq)
	);
	CREATE INDEX knowledge_chunks_kb ON knowledge_chunks (tenant, kb, doc_id);
	CREATE INDEX knowledge_chunks_tsv ON knowledge_chunks USING gin (tsv);
	CREATE TABLE knowledge_vectors (
		chunk_id bigint NOT NULL PRIMARY KEY REFERENCES knowledge_chunks (id) ON DELETE CASCADE,
		tenant   text   COLLATE "C" NOT NULL,
		kb       text   COLLATE "C" NOT NULL,
		vec      bytea  NOT NULL -- unit length, float32 little-endian
	);
	CREATE INDEX knowledge_vectors_kb ON knowledge_vectors (tenant, kb, chunk_id);`,
}

// pgStore is the PostgreSQL Store: every method is one statement or one
// transaction on a pool of connections (see the comment above
// pgLockClass for how replicas stay consistent).
type pgStore struct {
	core
	pool *pgxpool.Pool
}

// OpenPostgres connects to the PostgreSQL database at url (a libpq/pgx
// connection string or URL, e.g. postgres://user:pass@host/db or
// postgres://user@/db?host=/run/postgresql) and returns a Store bounded by
// o.Limits. The schema is created if missing (replicas may open at once:
// they take turns) and versioned in the table knowledge_schema; a database
// from a newer version of this package is refused. Replicas that share the
// database must use the same Limits (each Add checks its own).
func OpenPostgres(ctx context.Context, url string, o Options) (Store, error) {
	if url == "" {
		return nil, errors.New("knowledge: open: empty PostgreSQL URL")
	}
	c, err := newCore(o)
	if err != nil {
		return nil, err
	}
	pool, err := pgdb.Open(ctx, url, pgdb.Schema{Table: "knowledge_schema", LockClass: int32(pgLockClass), Migrations: pgMigrations})
	if err != nil {
		return nil, fmt.Errorf("knowledge: open postgres: %w", err)
	}
	s := &pgStore{core: c, pool: pool}
	return s, nil
}

// pgReadOnly is the transaction of List and of loading vectors: one
// snapshot for all its queries.
var pgReadOnly = pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}

// Close implements Store.
func (s *pgStore) Close() error {
	s.pool.Close()
	return nil
}

// Add implements Store. The tenant's additions take turns, in all
// replicas, from the count of what the tenant keeps to commit.
func (s *pgStore) Add(ctx context.Context, tenant, kb string, in Input) (Document, error) {
	ing, err := s.prepareAdd(ctx, tenant, kb, in)
	if err != nil {
		return Document{}, err
	}
	doc, chunks := ing.doc, ing.chunks
	words := make([]string, len(chunks))
	for i, c := range chunks {
		words[i] = indexText(c)
	}
	now := s.now().UnixNano()
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return Document{}, fmt.Errorf("knowledge: add: %w", err)
	}
	defer tx.Rollback(ctx)
	// Read committed: after the lock, the count sees what the addition
	// before this one committed.
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`,
		int32(pgLockClass), tenant); err != nil {
		return Document{}, fmt.Errorf("knowledge: add: lock: %w", err)
	}
	var u tenantUsage
	err = tx.QueryRow(ctx,
		`SELECT count(*), coalesce(sum(documents), 0), coalesce(sum(chunks), 0),
		        count(*) FILTER (WHERE name = $2) > 0
		 FROM knowledge_kbs WHERE tenant = $1`,
		tenant, kb).Scan(&u.kbs, &u.docs, &u.chunks, &u.hasKB)
	if err != nil {
		return Document{}, fmt.Errorf("knowledge: add: count: %w", err)
	}
	if err := s.limits.checkAdd(u, len(chunks)); err != nil {
		return Document{}, fmt.Errorf("knowledge: add: %w", err)
	}
	// The knowledge base's row, made or counted, stays locked to commit.
	// (Against a DeleteKB under way, the upsert waits for it, then makes
	// the row anew.)
	if _, err := tx.Exec(ctx,
		`INSERT INTO knowledge_kbs AS k (tenant, name, created, updated, documents, chunks, bytes, version)
		 VALUES ($1, $2, $3, $3, 1, $4, $5, nextval('knowledge_version'))
		 ON CONFLICT (tenant, name) DO UPDATE SET
		   documents = k.documents + 1, chunks = k.chunks + excluded.chunks, bytes = k.bytes + excluded.bytes,
		   updated = greatest(k.updated, excluded.updated), version = excluded.version`,
		tenant, kb, now, len(chunks), doc.Bytes); err != nil {
		return Document{}, fmt.Errorf("knowledge: add: update knowledge base: %w", err)
	}
	if doc.ID, err = pgInsertDocument(ctx, tx, tenant, doc, now); err != nil {
		return Document{}, err
	}
	if err := pgInsertChunks(ctx, tx, tenant, kb, doc.ID, chunks, words, ing.vecs); err != nil {
		return Document{}, err
	}
	if err := tx.Commit(ctx); err != nil {
		return Document{}, fmt.Errorf("knowledge: add: commit: %w", err)
	}
	s.vectors.invalidate(scopeKey{tenant, kb})
	doc.Created = fromNano(now)
	return doc, nil
}

// pgInsertDocument stores doc's row under a fresh id and returns the id.
func pgInsertDocument(ctx context.Context, tx pgx.Tx, tenant string, doc Document, now int64) (string, error) {
	// As in SQLite: never overwrite on the all but impossible clash.
	for range 3 {
		id, err := newID()
		if err != nil {
			return "", err
		}
		tag, err := tx.Exec(ctx,
			`INSERT INTO knowledge_documents (id, tenant, kb, title, source, type, bytes, chunks, created)
			 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
			 ON CONFLICT (id) DO NOTHING`,
			id, tenant, doc.KB, doc.Title, doc.Source, doc.Type, doc.Bytes, doc.Chunks, now)
		if err != nil {
			return "", fmt.Errorf("knowledge: add: document: %w", err)
		}
		if tag.RowsAffected() == 1 {
			return id, nil
		}
	}
	return "", errors.New("knowledge: add: could not draw a free document id")
}

// pgInsertChunks stores a document's chunks with their tsvectors (of
// words, their indexText) and, when vecs is not nil, their vectors: one
// statement each.
func pgInsertChunks(ctx context.Context, tx pgx.Tx, tenant, kb, docID string, chunks, words []string, vecs [][]float32) error {
	rows, err := tx.Query(ctx,
		`INSERT INTO knowledge_chunks (tenant, kb, doc_id, seq, text, tsv)
		 SELECT $1, $2, $3, u.ord - 1, u.text, to_tsvector('knowledge_english'::regconfig, u.words)
		 FROM unnest($4::text[], $5::text[]) WITH ORDINALITY AS u (text, words, ord)
		 RETURNING id, seq`,
		tenant, kb, docID, chunks, words)
	if err != nil {
		return fmt.Errorf("knowledge: add: chunks: %w", err)
	}
	ids := make([]int64, len(chunks))
	n := 0
	for rows.Next() {
		var id int64
		var seq int
		if err := rows.Scan(&id, &seq); err != nil {
			rows.Close()
			return fmt.Errorf("knowledge: add: chunks: %w", err)
		}
		if seq < 0 || seq >= len(ids) {
			rows.Close()
			return fmt.Errorf("knowledge: add: chunks: sequence number %d of %d chunks", seq, len(ids))
		}
		ids[seq] = id
		n++
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("knowledge: add: chunks: %w", err)
	}
	if n != len(chunks) {
		return fmt.Errorf("knowledge: add: %d of %d chunks stored", n, len(chunks))
	}
	if vecs == nil {
		return nil
	}
	blobs := make([][]byte, len(vecs))
	for i, v := range vecs {
		blobs[i] = encodeVec(v)
	}
	tag, err := tx.Exec(ctx,
		`INSERT INTO knowledge_vectors (chunk_id, tenant, kb, vec)
		 SELECT u.id, $1, $2, u.vec FROM unnest($3::bigint[], $4::bytea[]) AS u (id, vec)`,
		tenant, kb, ids, blobs)
	if err != nil {
		return fmt.Errorf("knowledge: add: vectors: %w", err)
	}
	if tag.RowsAffected() != int64(len(vecs)) {
		return fmt.Errorf("knowledge: add: %d of %d vectors stored", tag.RowsAffected(), len(vecs))
	}
	return nil
}

// pgDocColumns are the columns scanned by scanDocument.
const pgDocColumns = `id, kb, title, source, type, bytes, chunks, created`

// Get implements Store.
func (s *pgStore) Get(ctx context.Context, tenant, kb, id string) (Document, error) {
	if err := checkScope(tenant, kb); err != nil {
		return Document{}, fmt.Errorf("knowledge: get: %w", err)
	}
	if !validID(id) {
		return Document{}, fmt.Errorf("knowledge: get %s/%s: %w", kb, truncate(id, 40), ErrNotFound)
	}
	d, err := scanDocument(s.pool.QueryRow(ctx,
		`SELECT `+pgDocColumns+` FROM knowledge_documents WHERE tenant = $1 AND kb = $2 AND id = $3`,
		tenant, kb, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Document{}, fmt.Errorf("knowledge: get %s/%s: %w", kb, id, ErrNotFound)
	}
	if err != nil {
		return Document{}, fmt.Errorf("knowledge: get %s/%s: %w", kb, id, err)
	}
	return d, nil
}

// pgKBState returns ErrNotFound unless the tenant has knowledge base kb,
// else its chunk count and version.
func pgKBState(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, tenant, kb string) (int, int64, error) {
	var chunks int
	var ver int64
	err := q.QueryRow(ctx,
		`SELECT chunks, version FROM knowledge_kbs WHERE tenant = $1 AND name = $2`,
		tenant, kb).Scan(&chunks, &ver)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, 0, fmt.Errorf("knowledge base %s: %w", kb, ErrNotFound)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("knowledge base %s: %w", kb, err)
	}
	return chunks, ver, nil
}

// List implements Store.
func (s *pgStore) List(ctx context.Context, tenant, kb string, limit int, before string) ([]Document, error) {
	if err := checkScope(tenant, kb); err != nil {
		return nil, fmt.Errorf("knowledge: list: %w", err)
	}
	if before != "" && !validID(before) {
		return nil, fmt.Errorf("knowledge: list %s: before %s: %w", kb, truncate(before, 40), ErrNotFound)
	}
	limit = listLimit(limit)
	tx, err := s.pool.BeginTx(ctx, pgReadOnly)
	if err != nil {
		return nil, fmt.Errorf("knowledge: list %s: %w", kb, err)
	}
	defer tx.Rollback(ctx)
	if _, _, err := pgKBState(ctx, tx, tenant, kb); err != nil {
		return nil, fmt.Errorf("knowledge: list: %w", err)
	}
	// The page holds what sorts after the cursor, the (created, id) of
	// before, in (created DESC, id DESC) order.
	query := `SELECT ` + pgDocColumns + ` FROM knowledge_documents
		 WHERE tenant = $1 AND kb = $2
		 ORDER BY created DESC, id DESC
		 LIMIT $3`
	args := []any{tenant, kb, limit}
	if before != "" {
		var curCreated int64
		err := tx.QueryRow(ctx,
			`SELECT created FROM knowledge_documents WHERE tenant = $1 AND kb = $2 AND id = $3`,
			tenant, kb, before).Scan(&curCreated)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("knowledge: list %s: before %s: %w", kb, before, ErrNotFound)
		}
		if err != nil {
			return nil, fmt.Errorf("knowledge: list %s: %w", kb, err)
		}
		query = `SELECT ` + pgDocColumns + ` FROM knowledge_documents
		 WHERE tenant = $1 AND kb = $2 AND (created, id) < ($3, $4)
		 ORDER BY created DESC, id DESC
		 LIMIT $5`
		args = []any{tenant, kb, curCreated, before, limit}
	}
	rows, err := tx.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("knowledge: list %s: %w", kb, err)
	}
	defer rows.Close()
	out, err := readDocuments(rows, limit)
	if err != nil {
		return nil, fmt.Errorf("knowledge: list %s: %w", kb, err)
	}
	return out, nil
}

// KBs implements Store.
func (s *pgStore) KBs(ctx context.Context, tenant string) ([]KB, error) {
	if err := checkTenant(tenant); err != nil {
		return nil, fmt.Errorf("knowledge: list knowledge bases: %w", err)
	}
	rows, err := s.pool.Query(ctx,
		`SELECT name, documents, chunks, bytes, updated FROM knowledge_kbs WHERE tenant = $1 ORDER BY name`,
		tenant)
	if err != nil {
		return nil, fmt.Errorf("knowledge: list knowledge bases: %w", err)
	}
	defer rows.Close()
	out, err := readKBs(rows)
	if err != nil {
		return nil, fmt.Errorf("knowledge: list knowledge bases: %w", err)
	}
	return out, nil
}

// Delete implements Store.
func (s *pgStore) Delete(ctx context.Context, tenant, kb, id string) error {
	if err := checkScope(tenant, kb); err != nil {
		return fmt.Errorf("knowledge: delete: %w", err)
	}
	if !validID(id) {
		return fmt.Errorf("knowledge: delete %s/%s: %w", kb, truncate(id, 40), ErrNotFound)
	}
	now := s.now().UnixNano()
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("knowledge: delete %s/%s: %w", kb, id, err)
	}
	defer tx.Rollback(ctx)
	// The knowledge base's row first, as every write does.
	var one int
	err = tx.QueryRow(ctx,
		`SELECT 1 FROM knowledge_kbs WHERE tenant = $1 AND name = $2 FOR NO KEY UPDATE`,
		tenant, kb).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("knowledge: delete %s/%s: %w", kb, id, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("knowledge: delete %s/%s: %w", kb, id, err)
	}
	var bytes, chunks int64
	err = tx.QueryRow(ctx,
		`SELECT bytes, chunks FROM knowledge_documents WHERE tenant = $1 AND kb = $2 AND id = $3`,
		tenant, kb, id).Scan(&bytes, &chunks)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("knowledge: delete %s/%s: %w", kb, id, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("knowledge: delete %s/%s: %w", kb, id, err)
	}
	steps := []struct{ what, query string }{
		{"vectors", `DELETE FROM knowledge_vectors WHERE tenant = $1 AND kb = $2 AND chunk_id IN (
			SELECT c.id FROM knowledge_chunks AS c WHERE c.tenant = $1 AND c.kb = $2 AND c.doc_id = $3)`},
		{"chunks", `DELETE FROM knowledge_chunks WHERE tenant = $1 AND kb = $2 AND doc_id = $3`},
		{"document", `DELETE FROM knowledge_documents WHERE tenant = $1 AND kb = $2 AND id = $3`},
	}
	for _, st := range steps {
		if _, err := tx.Exec(ctx, st.query, tenant, kb, id); err != nil {
			return fmt.Errorf("knowledge: delete %s/%s: %s: %w", kb, id, st.what, err)
		}
	}
	if _, err := tx.Exec(ctx,
		`UPDATE knowledge_kbs SET documents = documents - 1, chunks = chunks - $3, bytes = bytes - $4,
		   updated = greatest(updated, $5), version = nextval('knowledge_version')
		 WHERE tenant = $1 AND name = $2`,
		tenant, kb, chunks, bytes, now); err != nil {
		return fmt.Errorf("knowledge: delete %s/%s: update knowledge base: %w", kb, id, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("knowledge: delete %s/%s: commit: %w", kb, id, err)
	}
	s.vectors.invalidate(scopeKey{tenant, kb})
	return nil
}

// DeleteKB implements Store.
func (s *pgStore) DeleteKB(ctx context.Context, tenant, kb string) (int, error) {
	if err := checkScope(tenant, kb); err != nil {
		return 0, fmt.Errorf("knowledge: delete knowledge base: %w", err)
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("knowledge: delete knowledge base %s: %w", kb, err)
	}
	defer tx.Rollback(ctx)
	var docs int
	err = tx.QueryRow(ctx,
		`SELECT documents FROM knowledge_kbs WHERE tenant = $1 AND name = $2 FOR UPDATE`,
		tenant, kb).Scan(&docs)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("knowledge: delete knowledge base %s: %w", kb, ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("knowledge: delete knowledge base %s: %w", kb, err)
	}
	steps := []struct{ what, query string }{
		{"vectors", `DELETE FROM knowledge_vectors WHERE tenant = $1 AND kb = $2`},
		{"chunks", `DELETE FROM knowledge_chunks WHERE tenant = $1 AND kb = $2`},
		{"documents", `DELETE FROM knowledge_documents WHERE tenant = $1 AND kb = $2`},
		{"knowledge base", `DELETE FROM knowledge_kbs WHERE tenant = $1 AND name = $2`},
	}
	for _, st := range steps {
		if _, err := tx.Exec(ctx, st.query, tenant, kb); err != nil {
			return 0, fmt.Errorf("knowledge: delete knowledge base %s: %s: %w", kb, st.what, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("knowledge: delete knowledge base %s: commit: %w", kb, err)
	}
	s.vectors.invalidate(scopeKey{tenant, kb})
	return docs, nil
}

// Search implements Store.
func (s *pgStore) Search(ctx context.Context, tenant, kb, query string, k int) ([]Hit, error) {
	return s.search(ctx, s, tenant, kb, query, k)
}

// kbState implements searchBackend.
func (s *pgStore) kbState(ctx context.Context, tenant, kb string) (int, int64, error) {
	return pgKBState(ctx, s.pool, tenant, kb)
}

// pgLexicalSQL ranks a knowledge base's chunks that hold any of the
// query's words by ts_rank_cd, normalised by the log of the chunk's
// length. Arguments: the to_tsquery text (tsQuery), tenant, knowledge
// base, depth.
const pgLexicalSQL = `SELECT c.id, ts_rank_cd(c.tsv, q, 1)::float8 AS score
	 FROM knowledge_chunks AS c, to_tsquery('knowledge_english'::regconfig, $1) AS q
	 WHERE c.tenant = $2 AND c.kb = $3 AND c.tsv @@ q
	 ORDER BY score DESC, c.id
	 LIMIT $4`

// lexical implements searchBackend.
func (s *pgStore) lexical(ctx context.Context, tenant, kb string, terms []string, depth int) ([]scored, error) {
	rows, err := s.pool.Query(ctx, pgLexicalSQL, tsQuery(terms), tenant, kb, depth)
	if err != nil {
		return nil, fmt.Errorf("full-text search: %w", err)
	}
	defer rows.Close()
	out, err := readScored(rows, 1)
	if err != nil {
		return nil, fmt.Errorf("full-text search: %w", err)
	}
	return out, nil
}

// scanVectors implements searchBackend.
func (s *pgStore) scanVectors(ctx context.Context, tenant, kb string, f func(id int64, v []float32)) error {
	return pgScanVectors(ctx, s.pool, tenant, kb, f)
}

// pgScanVectors calls f with each vector of the knowledge base, in chunk
// order, read through q; v is reused between calls.
func pgScanVectors(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, tenant, kb string, f func(id int64, v []float32)) error {
	rows, err := q.Query(ctx,
		`SELECT chunk_id, vec FROM knowledge_vectors WHERE tenant = $1 AND kb = $2 ORDER BY chunk_id`,
		tenant, kb)
	if err != nil {
		return fmt.Errorf("read vectors: %w", err)
	}
	defer rows.Close()
	if err := readVectors[pgtype.DriverBytes](rows, f); err != nil {
		return fmt.Errorf("read vectors: %w", err)
	}
	return nil
}

// loadVectors implements searchBackend: the version and the vectors are
// read in one snapshot, so the set is exactly that version's.
func (s *pgStore) loadVectors(ctx context.Context, tenant, kb string, chunks int) (*vecSet, int64, error) {
	tx, err := s.pool.BeginTx(ctx, pgReadOnly)
	if err != nil {
		return nil, 0, fmt.Errorf("read vectors: %w", err)
	}
	defer tx.Rollback(ctx)
	_, ver, err := pgKBState(ctx, tx, tenant, kb)
	if err != nil {
		return nil, 0, err
	}
	set, err := collectVectors(chunks, func(f func(id int64, v []float32)) error {
		return pgScanVectors(ctx, tx, tenant, kb, f)
	})
	if err != nil {
		return nil, 0, err
	}
	return set, ver, nil
}

// hits implements searchBackend.
func (s *pgStore) hits(ctx context.Context, tenant, kb string, ranked []fused) ([]Hit, error) {
	ids := make([]int64, len(ranked))
	for i, r := range ranked {
		ids[i] = r.id
	}
	rows, err := s.pool.Query(ctx,
		`SELECT c.id, c.doc_id, c.seq, c.text, d.title, d.source
		 FROM knowledge_chunks AS c JOIN knowledge_documents AS d ON d.id = c.doc_id
		 WHERE c.tenant = $1 AND c.kb = $2 AND d.tenant = $1 AND d.kb = $2 AND c.id = ANY($3::bigint[])`,
		tenant, kb, ids)
	if err != nil {
		return nil, fmt.Errorf("read chunks: %w", err)
	}
	defer rows.Close()
	out, err := readHits(rows, ranked)
	if err != nil {
		return nil, fmt.Errorf("read chunks: %w", err)
	}
	return out, nil
}
