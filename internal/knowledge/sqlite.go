package knowledge

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/ncruces/go-sqlite3"
	"github.com/ncruces/go-sqlite3/ext/fts5"

	"github.com/mdsa-go/mdsa/internal/sqlitedb"
)

// MemoryPath opens a private in-memory database (one connection, lost on
// Close); meant for tests.
const MemoryPath = sqlitedb.MemoryPath

// migrations are the schema versions, in order: migrations[i] moves the
// database from PRAGMA user_version i to i+1. Append, never edit.
var migrations = []string{
	// 1: knowledge bases, documents, chunks, their vectors and the
	// full-text index.
	`CREATE TABLE kbs (
		tenant    TEXT    NOT NULL,
		name      TEXT    NOT NULL,
		created   INTEGER NOT NULL, -- Unix nanoseconds
		updated   INTEGER NOT NULL, -- Unix nanoseconds
		documents INTEGER NOT NULL DEFAULT 0,
		chunks    INTEGER NOT NULL DEFAULT 0,
		bytes     INTEGER NOT NULL DEFAULT 0,
		PRIMARY KEY (tenant, name)
	) STRICT, WITHOUT ROWID;
	CREATE TABLE documents (
		id      TEXT    NOT NULL PRIMARY KEY,
		tenant  TEXT    NOT NULL,
		kb      TEXT    NOT NULL,
		title   TEXT    NOT NULL,
		source  TEXT    NOT NULL,
		type    TEXT    NOT NULL,
		bytes   INTEGER NOT NULL,
		chunks  INTEGER NOT NULL,
		created INTEGER NOT NULL, -- Unix nanoseconds
		FOREIGN KEY (tenant, kb) REFERENCES kbs (tenant, name) ON DELETE CASCADE
	) STRICT;
	CREATE INDEX documents_kb_created ON documents (tenant, kb, created, id);
	CREATE TABLE chunks (
		id     INTEGER NOT NULL PRIMARY KEY, -- the full-text index's rowid
		tenant TEXT    NOT NULL,
		kb     TEXT    NOT NULL,
		doc_id TEXT    NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
		seq    INTEGER NOT NULL, -- 0-based within the document
		text   TEXT    NOT NULL,
		UNIQUE (doc_id, seq)
	) STRICT;
	-- (doc_id, seq) serves the foreign key; (tenant, kb, doc_id) the
	-- scoped statements, per knowledge base or per document.
	CREATE INDEX chunks_kb ON chunks (tenant, kb, doc_id);
	CREATE TABLE vectors (
		chunk_id INTEGER NOT NULL PRIMARY KEY REFERENCES chunks (id) ON DELETE CASCADE,
		tenant   TEXT    NOT NULL,
		kb       TEXT    NOT NULL,
		vec      BLOB    NOT NULL -- unit length, float32 little-endian
	) STRICT;
	CREATE INDEX vectors_kb ON vectors (tenant, kb);
	-- scope holds one token per chunk, scopeToken(tenant, kb), which
	-- confines every MATCH to one knowledge base of one tenant.
	CREATE VIRTUAL TABLE chunks_fts USING fts5 (
		scope, text,
		content = '', contentless_delete = 1,
		tokenize = 'porter unicode61 remove_diacritics 2'
	);
	CREATE TRIGGER chunks_fts_delete AFTER DELETE ON chunks BEGIN
		DELETE FROM chunks_fts WHERE rowid = old.id;
	END;`,
}

// sqliteStore is the SQLite Store. Writes are serialised through w, a
// pool of exactly one connection, so concurrent writers queue in
// database/sql instead of failing with SQLITE_BUSY; reads use r, a pool of
// read-only connections that WAL mode lets run beside the writer. For
// MemoryPath, r is w.
type sqliteStore struct {
	core
	db   *sqlitedb.DB
	w, r *sql.DB
}

// Open opens (creating it if needed) the SQLite database at path and
// returns a Store bounded by o.Limits. The database runs in WAL mode with a
// busy timeout and foreign keys on; its schema is created or migrated,
// versioned by PRAGMA user_version. A database from a newer version of
// this package is refused. path MemoryPath (":memory:") opens a private
// in-memory database. Only one process may write to the database: for
// replicas, see OpenPostgres.
func Open(ctx context.Context, path string, o Options) (Store, error) {
	if path == "" {
		return nil, errors.New("knowledge: open: empty path")
	}
	c, err := newCore(o)
	if err != nil {
		return nil, err
	}
	db, err := sqlitedb.Open(ctx, path, migrations, registerFTS5)
	if err != nil {
		return nil, fmt.Errorf("knowledge: %w", err)
	}
	return &sqliteStore{core: c, db: db, w: db.W, r: db.R}, nil
}

// registerFTS5 adds the FTS5 extension to each new connection: the
// driver's default build lacks it.
func registerFTS5(c *sqlite3.Conn) error {
	if err := fts5.Register(c); err != nil {
		return fmt.Errorf("register fts5: %w", err)
	}
	return nil
}

// Close implements Store.
func (s *sqliteStore) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("knowledge: close: %w", err)
	}
	return nil
}

// Add implements Store.
func (s *sqliteStore) Add(ctx context.Context, tenant, kb string, in Input) (Document, error) {
	ing, err := s.prepareAdd(ctx, tenant, kb, in)
	if err != nil {
		return Document{}, err
	}
	doc, chunks, vecs := ing.doc, ing.chunks, ing.vecs
	now := s.now().UnixNano()
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return Document{}, fmt.Errorf("knowledge: add: %w", err)
	}
	defer tx.Rollback()
	if err := s.checkAddLimits(ctx, tx, tenant, kb, len(chunks)); err != nil {
		return Document{}, fmt.Errorf("knowledge: add: %w", err)
	}
	if _, err := tx.ExecContext(ctx,
		`INSERT INTO kbs (tenant, name, created, updated) VALUES (?, ?, ?, ?)
		 ON CONFLICT (tenant, name) DO NOTHING`,
		tenant, kb, now, now); err != nil {
		return Document{}, fmt.Errorf("knowledge: add: create knowledge base: %w", err)
	}
	if doc.ID, err = insertDocument(ctx, tx, tenant, doc, now); err != nil {
		return Document{}, err
	}
	if err := insertChunks(ctx, tx, tenant, kb, doc.ID, chunks, vecs); err != nil {
		return Document{}, err
	}
	if _, err := tx.ExecContext(ctx,
		`UPDATE kbs SET documents = documents + 1, chunks = chunks + ?, bytes = bytes + ?, updated = max(updated, ?)
		 WHERE tenant = ? AND name = ?`,
		len(chunks), doc.Bytes, now, tenant, kb); err != nil {
		return Document{}, fmt.Errorf("knowledge: add: update knowledge base: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return Document{}, fmt.Errorf("knowledge: add: commit: %w", err)
	}
	if vecs != nil {
		s.vectors.invalidate(scopeKey{tenant, kb})
	}
	doc.Created = fromNano(now)
	return doc, nil
}

// checkAddLimits returns a *LimitError when adding a document of chunks
// chunks to the tenant's knowledge base kb would exceed a limit.
func (s *sqliteStore) checkAddLimits(ctx context.Context, tx *sql.Tx, tenant, kb string, chunks int) error {
	var u tenantUsage
	var exists int
	err := tx.QueryRowContext(ctx,
		`SELECT count(*), coalesce(sum(documents), 0), coalesce(sum(chunks), 0),
		        coalesce(sum(name = ?), 0)
		 FROM kbs WHERE tenant = ?`,
		kb, tenant).Scan(&u.kbs, &u.docs, &u.chunks, &exists)
	if err != nil {
		return fmt.Errorf("count: %w", err)
	}
	u.hasKB = exists > 0
	return s.limits.checkAdd(u, chunks)
}

// insertDocument stores doc's row under a fresh id and returns the id.
func insertDocument(ctx context.Context, tx *sql.Tx, tenant string, doc Document, now int64) (string, error) {
	// A clash of 96 random bits is all but impossible; still, never
	// overwrite: retry with a new id.
	for range 3 {
		id, err := newID()
		if err != nil {
			return "", err
		}
		res, err := tx.ExecContext(ctx,
			`INSERT INTO documents (id, tenant, kb, title, source, type, bytes, chunks, created)
			 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
			 ON CONFLICT (id) DO NOTHING`,
			id, tenant, doc.KB, doc.Title, doc.Source, doc.Type, doc.Bytes, doc.Chunks, now)
		if err != nil {
			return "", fmt.Errorf("knowledge: add: document: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return "", fmt.Errorf("knowledge: add: document: %w", err)
		} else if n == 1 {
			return id, nil
		}
	}
	return "", errors.New("knowledge: add: could not draw a free document id")
}

// insertChunks stores a document's chunks, their full-text entries and,
// when vecs is not nil, their vectors.
func insertChunks(ctx context.Context, tx *sql.Tx, tenant, kb, docID string, chunks []string, vecs [][]float32) error {
	insChunk, err := tx.PrepareContext(ctx,
		`INSERT INTO chunks (tenant, kb, doc_id, seq, text) VALUES (?, ?, ?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("knowledge: add: chunks: %w", err)
	}
	defer insChunk.Close()
	insFTS, err := tx.PrepareContext(ctx,
		`INSERT INTO chunks_fts (rowid, scope, text) VALUES (?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("knowledge: add: chunks: %w", err)
	}
	defer insFTS.Close()
	var insVec *sql.Stmt
	if vecs != nil {
		if insVec, err = tx.PrepareContext(ctx,
			`INSERT INTO vectors (chunk_id, tenant, kb, vec) VALUES (?, ?, ?, ?)`); err != nil {
			return fmt.Errorf("knowledge: add: vectors: %w", err)
		}
		defer insVec.Close()
	}
	scope := scopeToken(tenant, kb)
	for i, text := range chunks {
		res, err := insChunk.ExecContext(ctx, tenant, kb, docID, i, text)
		if err != nil {
			return fmt.Errorf("knowledge: add: chunk %d: %w", i, err)
		}
		id, err := res.LastInsertId()
		if err != nil {
			return fmt.Errorf("knowledge: add: chunk %d: %w", i, err)
		}
		if _, err := insFTS.ExecContext(ctx, id, scope, text); err != nil {
			return fmt.Errorf("knowledge: add: index chunk %d: %w", i, err)
		}
		if insVec != nil {
			if _, err := insVec.ExecContext(ctx, id, tenant, kb, encodeVec(vecs[i])); err != nil {
				return fmt.Errorf("knowledge: add: vector of chunk %d: %w", i, err)
			}
		}
	}
	return nil
}

// docColumns are the columns scanned by scanDocument.
const docColumns = `id, kb, title, source, type, bytes, chunks, created`

// scanDocument scans a row of docColumns.
func scanDocument(row interface{ Scan(...any) error }) (Document, error) {
	var d Document
	var created int64
	if err := row.Scan(&d.ID, &d.KB, &d.Title, &d.Source, &d.Type, &d.Bytes, &d.Chunks, &created); err != nil {
		return Document{}, err
	}
	d.Created = fromNano(created)
	return d, nil
}

// Get implements Store.
func (s *sqliteStore) Get(ctx context.Context, tenant, kb, id string) (Document, error) {
	if err := checkScope(tenant, kb); err != nil {
		return Document{}, fmt.Errorf("knowledge: get: %w", err)
	}
	if !validID(id) {
		return Document{}, fmt.Errorf("knowledge: get %s/%s: %w", kb, truncate(id, 40), ErrNotFound)
	}
	d, err := scanDocument(s.r.QueryRowContext(ctx,
		`SELECT `+docColumns+` FROM documents WHERE tenant = ? AND kb = ? AND id = ?`,
		tenant, kb, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Document{}, fmt.Errorf("knowledge: get %s/%s: %w", kb, id, ErrNotFound)
	}
	if err != nil {
		return Document{}, fmt.Errorf("knowledge: get %s/%s: %w", kb, id, err)
	}
	return d, nil
}

// kbExists returns ErrNotFound unless the tenant has knowledge base kb, and
// the number of chunks it holds.
func kbExists(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, tenant, kb string) (int, error) {
	var chunks int
	err := q.QueryRowContext(ctx,
		`SELECT chunks FROM kbs WHERE tenant = ? AND name = ?`, tenant, kb).Scan(&chunks)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("knowledge base %s: %w", kb, ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("knowledge base %s: %w", kb, err)
	}
	return chunks, nil
}

// List implements Store.
func (s *sqliteStore) List(ctx context.Context, tenant, kb string, limit int, before string) ([]Document, error) {
	if err := checkScope(tenant, kb); err != nil {
		return nil, fmt.Errorf("knowledge: list: %w", err)
	}
	if before != "" && !validID(before) {
		return nil, fmt.Errorf("knowledge: list %s: before %s: %w", kb, truncate(before, 40), ErrNotFound)
	}
	limit = listLimit(limit)
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("knowledge: list %s: %w", kb, err)
	}
	defer tx.Rollback()
	if _, err := kbExists(ctx, tx, tenant, kb); err != nil {
		return nil, fmt.Errorf("knowledge: list: %w", err)
	}
	// The page holds what sorts after the cursor, the (created, id) of
	// before, in (created DESC, id DESC) order.
	query := `SELECT ` + docColumns + ` FROM documents
		 WHERE tenant = ? AND kb = ?
		 ORDER BY created DESC, id DESC
		 LIMIT ?`
	args := []any{tenant, kb, limit}
	if before != "" {
		var curCreated int64
		err := tx.QueryRowContext(ctx,
			`SELECT created FROM documents WHERE tenant = ? AND kb = ? AND id = ?`,
			tenant, kb, before).Scan(&curCreated)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("knowledge: list %s: before %s: %w", kb, before, ErrNotFound)
		}
		if err != nil {
			return nil, fmt.Errorf("knowledge: list %s: %w", kb, err)
		}
		query = `SELECT ` + docColumns + ` FROM documents
		 WHERE tenant = ? AND kb = ? AND (created, id) < (?, ?)
		 ORDER BY created DESC, id DESC
		 LIMIT ?`
		args = []any{tenant, kb, curCreated, before, limit}
	}
	rows, err := tx.QueryContext(ctx, query, args...)
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
func (s *sqliteStore) KBs(ctx context.Context, tenant string) ([]KB, error) {
	if err := checkTenant(tenant); err != nil {
		return nil, fmt.Errorf("knowledge: list knowledge bases: %w", err)
	}
	rows, err := s.r.QueryContext(ctx,
		`SELECT name, documents, chunks, bytes, updated FROM kbs WHERE tenant = ? ORDER BY name`,
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

// deleteDocVectorsSQL deletes a document's vectors. Arguments: tenant,
// knowledge base, tenant, knowledge base, document id.
const deleteDocVectorsSQL = `DELETE FROM vectors WHERE tenant = ? AND kb = ? AND chunk_id IN (
	SELECT id FROM chunks WHERE tenant = ? AND kb = ? AND doc_id = ?)`

// deleteDocChunksSQL deletes a document's chunks (and, by the trigger
// chunks_fts_delete, their full-text entries). Arguments: tenant,
// knowledge base, document id.
const deleteDocChunksSQL = `DELETE FROM chunks WHERE tenant = ? AND kb = ? AND doc_id = ?`

// Delete implements Store.
func (s *sqliteStore) Delete(ctx context.Context, tenant, kb, id string) error {
	if err := checkScope(tenant, kb); err != nil {
		return fmt.Errorf("knowledge: delete: %w", err)
	}
	if !validID(id) {
		return fmt.Errorf("knowledge: delete %s/%s: %w", kb, truncate(id, 40), ErrNotFound)
	}
	now := s.now().UnixNano()
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("knowledge: delete %s/%s: %w", kb, id, err)
	}
	defer tx.Rollback()
	var bytes, chunks int64
	err = tx.QueryRowContext(ctx,
		`SELECT bytes, chunks FROM documents WHERE tenant = ? AND kb = ? AND id = ?`,
		tenant, kb, id).Scan(&bytes, &chunks)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("knowledge: delete %s/%s: %w", kb, id, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("knowledge: delete %s/%s: %w", kb, id, err)
	}
	if _, err := tx.ExecContext(ctx, deleteDocVectorsSQL, tenant, kb, tenant, kb, id); err != nil {
		return fmt.Errorf("knowledge: delete %s/%s: vectors: %w", kb, id, err)
	}
	// The trigger chunks_fts_delete drops each chunk's full-text entry.
	if _, err := tx.ExecContext(ctx, deleteDocChunksSQL, tenant, kb, id); err != nil {
		return fmt.Errorf("knowledge: delete %s/%s: chunks: %w", kb, id, err)
	}
	if _, err := tx.ExecContext(ctx,
		`DELETE FROM documents WHERE tenant = ? AND kb = ? AND id = ?`,
		tenant, kb, id); err != nil {
		return fmt.Errorf("knowledge: delete %s/%s: %w", kb, id, err)
	}
	if _, err := tx.ExecContext(ctx,
		`UPDATE kbs SET documents = documents - 1, chunks = chunks - ?, bytes = bytes - ?, updated = max(updated, ?)
		 WHERE tenant = ? AND name = ?`,
		chunks, bytes, now, tenant, kb); err != nil {
		return fmt.Errorf("knowledge: delete %s/%s: update knowledge base: %w", kb, id, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("knowledge: delete %s/%s: commit: %w", kb, id, err)
	}
	s.vectors.invalidate(scopeKey{tenant, kb})
	return nil
}

// DeleteKB implements Store.
func (s *sqliteStore) DeleteKB(ctx context.Context, tenant, kb string) (int, error) {
	if err := checkScope(tenant, kb); err != nil {
		return 0, fmt.Errorf("knowledge: delete knowledge base: %w", err)
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("knowledge: delete knowledge base %s: %w", kb, err)
	}
	defer tx.Rollback()
	var docs int
	err = tx.QueryRowContext(ctx,
		`SELECT documents FROM kbs WHERE tenant = ? AND name = ?`, tenant, kb).Scan(&docs)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("knowledge: delete knowledge base %s: %w", kb, ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("knowledge: delete knowledge base %s: %w", kb, err)
	}
	steps := []struct{ what, query string }{
		{"vectors", `DELETE FROM vectors WHERE tenant = ? AND kb = ?`},
		// The trigger chunks_fts_delete drops each chunk's full-text entry.
		{"chunks", `DELETE FROM chunks WHERE tenant = ? AND kb = ?`},
		{"documents", `DELETE FROM documents WHERE tenant = ? AND kb = ?`},
		{"knowledge base", `DELETE FROM kbs WHERE tenant = ? AND name = ?`},
	}
	for _, st := range steps {
		if _, err := tx.ExecContext(ctx, st.query, tenant, kb); err != nil {
			return 0, fmt.Errorf("knowledge: delete knowledge base %s: %s: %w", kb, st.what, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("knowledge: delete knowledge base %s: commit: %w", kb, err)
	}
	s.vectors.invalidate(scopeKey{tenant, kb})
	return docs, nil
}
