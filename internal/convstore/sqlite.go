package convstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/mdsa-go/mdsa/internal/sqlitedb"

	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// MemoryPath opens a private in-memory database (one connection, lost on
// Close); meant for tests.
const MemoryPath = sqlitedb.MemoryPath

// sweepBatch is how many conversations Sweep deletes per transaction, so that
// it never holds the write lock for long.
const sweepBatch = 500

// migrations are the schema versions, in order: migrations[i] moves the
// database from PRAGMA user_version i to i+1. Append, never edit.
var migrations = []string{
	// 1: conversations and their messages.
	`CREATE TABLE conversations (
		id       TEXT    NOT NULL PRIMARY KEY,
		tenant   TEXT    NOT NULL,
		created  INTEGER NOT NULL, -- Unix nanoseconds
		updated  INTEGER NOT NULL, -- Unix nanoseconds
		messages INTEGER NOT NULL DEFAULT 0,
		bytes    INTEGER NOT NULL DEFAULT 0
	) STRICT;
	CREATE INDEX conversations_tenant_updated ON conversations (tenant, updated, id);
	CREATE INDEX conversations_updated ON conversations (updated);
	CREATE TABLE messages (
		conversation_id TEXT    NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
		seq             INTEGER NOT NULL,
		role            TEXT    NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
		content         TEXT    NOT NULL,
		UNIQUE (conversation_id, seq)
	) STRICT;`,
}

// sqliteStore is the SQLite Store. Writes are serialised through w, a pool
// of exactly one connection, so concurrent writers queue in database/sql
// instead of failing with SQLITE_BUSY; reads use r, a pool of read-only
// connections that WAL mode lets run beside the writer. For MemoryPath, r is
// w.
type sqliteStore struct {
	db     *sqlitedb.DB
	w, r   *sql.DB
	limits Limits
	now    func() time.Time
}

// OpenSQLite opens (creating it if needed) the SQLite database at path and
// returns a Store bounded by l. The database runs in WAL mode with a busy
// timeout and foreign keys on; its schema is created or migrated, versioned
// by PRAGMA user_version. A database from a newer version of this package is
// refused. path MemoryPath (":memory:") opens a private in-memory database.
func OpenSQLite(ctx context.Context, path string, l Limits, opts ...Option) (Store, error) {
	if path == "" {
		return nil, errors.New("convstore: open: empty path")
	}
	if err := checkLimits(l); err != nil {
		return nil, err
	}
	o := newOptions(opts)
	s := &sqliteStore{limits: l, now: o.now}

	db, err := sqlitedb.Open(ctx, path, migrations, nil)
	if err != nil {
		return nil, fmt.Errorf("convstore: %w", err)
	}
	s.db, s.w, s.r = db, db.W, db.R
	return s, nil
}

// cutoff returns the Updated time, in Unix nanoseconds, at or before which a
// conversation has expired at now: math.MinInt64 without a TTL.
func (s *sqliteStore) cutoff(now int64) int64 { return expiryCutoff(s.limits, now) }

func (s *sqliteStore) nowNano() int64 { return s.now().UnixNano() }

// fromNano turns stored Unix nanoseconds back into a time.
func fromNano(n int64) time.Time { return time.Unix(0, n).UTC() }

// Create implements Store.
func (s *sqliteStore) Create(ctx context.Context, tenant string) (Summary, error) {
	if err := checkTenant(tenant); err != nil {
		return Summary{}, fmt.Errorf("convstore: create: %w", err)
	}
	now := s.nowNano()
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return Summary{}, fmt.Errorf("convstore: create: %w", err)
	}
	defer tx.Rollback()
	if s.limits.TTL > 0 {
		if _, err := tx.ExecContext(ctx,
			`DELETE FROM conversations WHERE tenant = ? AND updated <= ?`,
			tenant, s.cutoff(now)); err != nil {
			return Summary{}, fmt.Errorf("convstore: create: drop expired: %w", err)
		}
	}
	if s.limits.MaxPerTenant > 0 {
		var n int
		if err := tx.QueryRowContext(ctx,
			`SELECT count(*) FROM conversations WHERE tenant = ?`, tenant).Scan(&n); err != nil {
			return Summary{}, fmt.Errorf("convstore: create: count: %w", err)
		}
		if n >= s.limits.MaxPerTenant {
			return Summary{}, fmt.Errorf("convstore: create: tenant keeps %d conversations, the most allowed: %w", n, ErrFull)
		}
	}
	// A clash of 96 random bits is all but impossible; still, never
	// overwrite: retry with a new id.
	for range 3 {
		id, err := newID()
		if err != nil {
			return Summary{}, err
		}
		res, err := tx.ExecContext(ctx,
			`INSERT INTO conversations (id, tenant, created, updated) VALUES (?, ?, ?, ?)
			 ON CONFLICT (id) DO NOTHING`,
			id, tenant, now, now)
		if err != nil {
			return Summary{}, fmt.Errorf("convstore: create: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return Summary{}, fmt.Errorf("convstore: create: %w", err)
		} else if n == 0 {
			continue
		}
		if err := tx.Commit(); err != nil {
			return Summary{}, fmt.Errorf("convstore: create: commit: %w", err)
		}
		return Summary{ID: id, Created: fromNano(now), Updated: fromNano(now)}, nil
	}
	return Summary{}, errors.New("convstore: create: could not draw a free id")
}

// Get implements Store.
func (s *sqliteStore) Get(ctx context.Context, tenant, id string) (Conversation, error) {
	if err := checkIDArgs(tenant, id); err != nil {
		return Conversation{}, fmt.Errorf("convstore: get: %w", err)
	}
	now := s.nowNano()
	// One read transaction: the summary and the messages are one snapshot.
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return Conversation{}, fmt.Errorf("convstore: get: %w", err)
	}
	defer tx.Rollback()
	var c Conversation
	var created, updated int64
	err = tx.QueryRowContext(ctx,
		`SELECT id, created, updated, messages, bytes FROM conversations
		 WHERE tenant = ? AND id = ?`,
		tenant, id).Scan(&c.ID, &created, &updated, &c.Messages, &c.Bytes)
	if errors.Is(err, sql.ErrNoRows) {
		return Conversation{}, fmt.Errorf("convstore: get: %w", ErrNotFound)
	}
	if err != nil {
		return Conversation{}, fmt.Errorf("convstore: get: %w", err)
	}
	if updated <= s.cutoff(now) {
		tx.Rollback()
		s.dropExpired(ctx, tenant, id, now)
		return Conversation{}, fmt.Errorf("convstore: get: %w", ErrNotFound)
	}
	c.Created, c.Updated = fromNano(created), fromNano(updated)
	rows, err := tx.QueryContext(ctx,
		`SELECT m.role, m.content FROM messages AS m
		 JOIN conversations AS c ON c.id = m.conversation_id
		 WHERE c.tenant = ? AND c.id = ?
		 ORDER BY m.seq`,
		tenant, id)
	if err != nil {
		return Conversation{}, fmt.Errorf("convstore: get messages: %w", err)
	}
	defer rows.Close()
	c.History = make([]abi.Message, 0, min(c.Messages, 1024))
	for rows.Next() {
		var m abi.Message
		if err := rows.Scan(&m.Role, &m.Content); err != nil {
			return Conversation{}, fmt.Errorf("convstore: get messages: %w", err)
		}
		c.History = append(c.History, m)
	}
	if err := rows.Err(); err != nil {
		return Conversation{}, fmt.Errorf("convstore: get messages: %w", err)
	}
	return c, nil
}

// dropExpired deletes one conversation found expired by a read. It is best
// effort: on failure the conversation still reads as absent, and Sweep or
// the next write that meets it deletes it.
func (s *sqliteStore) dropExpired(ctx context.Context, tenant, id string, now int64) {
	_, _ = s.w.ExecContext(ctx,
		`DELETE FROM conversations WHERE tenant = ? AND id = ? AND updated <= ?`,
		tenant, id, s.cutoff(now))
}

// Append implements Store.
func (s *sqliteStore) Append(ctx context.Context, tenant, id string, msgs ...abi.Message) (Summary, error) {
	if err := checkIDArgs(tenant, id); err != nil {
		return Summary{}, fmt.Errorf("convstore: append: %w", err)
	}
	size, err := checkMessages(msgs)
	if err != nil {
		return Summary{}, fmt.Errorf("convstore: append: %w", err)
	}
	now := s.nowNano()
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return Summary{}, fmt.Errorf("convstore: append: %w", err)
	}
	defer tx.Rollback()
	var count int
	var bytes, updated int64
	err = tx.QueryRowContext(ctx,
		`SELECT messages, bytes, updated FROM conversations WHERE tenant = ? AND id = ?`,
		tenant, id).Scan(&count, &bytes, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return Summary{}, fmt.Errorf("convstore: append: %w", ErrNotFound)
	}
	if err != nil {
		return Summary{}, fmt.Errorf("convstore: append: %w", err)
	}
	if updated <= s.cutoff(now) {
		if _, err := tx.ExecContext(ctx,
			`DELETE FROM conversations WHERE tenant = ? AND id = ?`, tenant, id); err == nil {
			_ = tx.Commit() // best effort, as in dropExpired
		}
		return Summary{}, fmt.Errorf("convstore: append: %w", ErrNotFound)
	}
	if m := s.limits.MaxMessages; m > 0 && count+len(msgs) > m {
		return Summary{}, fmt.Errorf("convstore: append: %d messages + %d would exceed %d: %w", count, len(msgs), m, ErrFull)
	}
	if m := s.limits.MaxBytes; m > 0 && bytes+size > m {
		return Summary{}, fmt.Errorf("convstore: append: %d bytes + %d would exceed %d: %w", bytes, size, m, ErrFull)
	}
	stmt, err := tx.PrepareContext(ctx,
		`INSERT INTO messages (conversation_id, seq, role, content)
		 SELECT id, ?, ?, ? FROM conversations WHERE tenant = ? AND id = ?`)
	if err != nil {
		return Summary{}, fmt.Errorf("convstore: append: %w", err)
	}
	defer stmt.Close()
	for i, m := range msgs {
		res, err := stmt.ExecContext(ctx, count+i+1, m.Role, m.Content, tenant, id)
		if err != nil {
			return Summary{}, fmt.Errorf("convstore: append message %d: %w", i, err)
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return Summary{}, fmt.Errorf("convstore: append message %d: %d rows stored (%v)", i, n, err)
		}
	}
	var sum Summary
	var created int64
	err = tx.QueryRowContext(ctx,
		`UPDATE conversations
		 SET messages = messages + ?, bytes = bytes + ?, updated = max(updated, ?)
		 WHERE tenant = ? AND id = ?
		 RETURNING id, created, updated, messages, bytes`,
		len(msgs), size, now, tenant, id).Scan(&sum.ID, &created, &updated, &sum.Messages, &sum.Bytes)
	if err != nil {
		return Summary{}, fmt.Errorf("convstore: append: update: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return Summary{}, fmt.Errorf("convstore: append: commit: %w", err)
	}
	sum.Created, sum.Updated = fromNano(created), fromNano(updated)
	return sum, nil
}

// List implements Store.
func (s *sqliteStore) List(ctx context.Context, tenant string, limit int, before string) ([]Summary, error) {
	if err := checkTenant(tenant); err != nil {
		return nil, fmt.Errorf("convstore: list: %w", err)
	}
	if before != "" && !validID(before) {
		return nil, fmt.Errorf("convstore: list: before: %w", ErrNotFound)
	}
	switch {
	case limit < 1:
		limit = DefaultListLimit
	case limit > MaxListLimit:
		limit = MaxListLimit
	}
	cut := s.cutoff(s.nowNano())
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("convstore: list: %w", err)
	}
	defer tx.Rollback()
	// The page holds what sorts after the cursor, the (updated, id) of
	// before, in (updated DESC, id DESC) order.
	query := `SELECT id, created, updated, messages, bytes FROM conversations
		 WHERE tenant = ? AND updated > ?
		 ORDER BY updated DESC, id DESC
		 LIMIT ?`
	args := []any{tenant, cut, limit}
	if before != "" {
		var curUpdated int64
		err := tx.QueryRowContext(ctx,
			`SELECT updated FROM conversations WHERE tenant = ? AND id = ? AND updated > ?`,
			tenant, before, cut).Scan(&curUpdated)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("convstore: list: before: %w", ErrNotFound)
		}
		if err != nil {
			return nil, fmt.Errorf("convstore: list: %w", err)
		}
		query = `SELECT id, created, updated, messages, bytes FROM conversations
		 WHERE tenant = ? AND updated > ? AND (updated, id) < (?, ?)
		 ORDER BY updated DESC, id DESC
		 LIMIT ?`
		args = []any{tenant, cut, curUpdated, before, limit}
	}
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("convstore: list: %w", err)
	}
	defer rows.Close()
	out := make([]Summary, 0, limit)
	for rows.Next() {
		var sum Summary
		var created, updated int64
		if err := rows.Scan(&sum.ID, &created, &updated, &sum.Messages, &sum.Bytes); err != nil {
			return nil, fmt.Errorf("convstore: list: %w", err)
		}
		sum.Created, sum.Updated = fromNano(created), fromNano(updated)
		out = append(out, sum)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("convstore: list: %w", err)
	}
	return out, nil
}

// Delete implements Store.
func (s *sqliteStore) Delete(ctx context.Context, tenant, id string) error {
	if err := checkIDArgs(tenant, id); err != nil {
		return fmt.Errorf("convstore: delete: %w", err)
	}
	now := s.nowNano()
	var updated int64
	err := s.w.QueryRowContext(ctx,
		`DELETE FROM conversations WHERE tenant = ? AND id = ? RETURNING updated`,
		tenant, id).Scan(&updated)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("convstore: delete: %w", ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("convstore: delete: %w", err)
	}
	if updated <= s.cutoff(now) {
		// It had already expired: gone now, but it was not there to delete.
		return fmt.Errorf("convstore: delete: %w", ErrNotFound)
	}
	return nil
}

// Sweep implements Store. It is the one query not scoped by tenant: expiry
// is the same for all.
func (s *sqliteStore) Sweep(ctx context.Context) (int, error) {
	if s.limits.TTL <= 0 {
		return 0, nil
	}
	cut := s.cutoff(s.nowNano())
	total := 0
	for {
		res, err := s.w.ExecContext(ctx,
			`DELETE FROM conversations WHERE id IN (
			   SELECT id FROM conversations WHERE updated <= ? LIMIT ?)`,
			cut, sweepBatch)
		if err != nil {
			return total, fmt.Errorf("convstore: sweep: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, fmt.Errorf("convstore: sweep: %w", err)
		}
		total += int(n)
		if n < sweepBatch {
			return total, nil
		}
	}
}

// Close implements Store.
func (s *sqliteStore) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("convstore: close: %w", err)
	}
	return nil
}
