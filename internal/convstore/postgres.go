package convstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mdsa-go/mdsa/internal/pgdb"
	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// pgLockClass is the first key of this package's advisory locks (the second
// is a hash of the tenant, or 0 for the schema), "mdsa" in ASCII, so that
// they do not collide with other users of the database.
const pgLockClass = 0x6d647361

// pgMigrations are the PostgreSQL schema versions, in order: pgMigrations[i]
// moves the database from convstore_schema.version i to i+1. Append, never
// edit. The tables mirror the SQLite ones; ids and tenants compare bytewise
// (COLLATE "C"), as in SQLite.
var pgMigrations = []string{
	// 1: conversations and their messages.
	`CREATE TABLE IF NOT EXISTS conversations (
		id       text    COLLATE "C" NOT NULL PRIMARY KEY,
		tenant   text    COLLATE "C" NOT NULL,
		created  bigint  NOT NULL, -- Unix nanoseconds
		updated  bigint  NOT NULL, -- Unix nanoseconds
		messages integer NOT NULL DEFAULT 0,
		bytes    bigint  NOT NULL DEFAULT 0
	);
	CREATE INDEX IF NOT EXISTS conversations_tenant_updated ON conversations (tenant, updated, id);
	CREATE INDEX IF NOT EXISTS conversations_updated ON conversations (updated);
	CREATE TABLE IF NOT EXISTS messages (
		conversation_id text    COLLATE "C" NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
		seq             integer NOT NULL,
		role            text    NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
		content         text    NOT NULL,
		PRIMARY KEY (conversation_id, seq)
	);`,
}

// pgStore is the PostgreSQL Store: every method is one statement or one
// transaction on a pool of connections. Several pgStores, in one process or
// in several replicas, may share a database: writes to a conversation lock
// its row (Append, SELECT ... FOR UPDATE), and Create serialises a tenant's
// creations with a transaction-scoped advisory lock, so that MaxPerTenant
// holds across replicas.
type pgStore struct {
	pool   *pgxpool.Pool
	limits Limits
	now    func() time.Time
}

// OpenPostgres connects to the PostgreSQL database at url (a libpq/pgx
// connection string or URL, e.g. postgres://user:pass@host/db or
// postgres://user@/db?host=/run/postgresql) and returns a Store bounded by
// l. The schema is created if missing (idempotently: replicas may open at
// once) and versioned in the table convstore_schema; a database from a newer
// version of this package is refused. Replicas that share the database must
// use the same Limits.
func OpenPostgres(ctx context.Context, url string, l Limits, opts ...Option) (Store, error) {
	if url == "" {
		return nil, errors.New("convstore: open: empty PostgreSQL URL")
	}
	if err := checkLimits(l); err != nil {
		return nil, err
	}
	o := newOptions(opts)
	pool, err := pgdb.Open(ctx, url, pgdb.Schema{Table: "convstore_schema", LockClass: int32(pgLockClass), Migrations: pgMigrations})
	if err != nil {
		return nil, fmt.Errorf("convstore: open postgres: %w", err)
	}
	s := &pgStore{pool: pool, limits: l, now: o.now}
	return s, nil
}

func (s *pgStore) cutoff(now int64) int64 { return expiryCutoff(s.limits, now) }

func (s *pgStore) nowNano() int64 { return s.now().UnixNano() }

// readOnly is the transaction of Get and List: one snapshot for all its
// queries.
var readOnly = pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}

// Create implements Store.
func (s *pgStore) Create(ctx context.Context, tenant string) (Summary, error) {
	if err := checkTenant(tenant); err != nil {
		return Summary{}, fmt.Errorf("convstore: create: %w", err)
	}
	now := s.nowNano()
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return Summary{}, fmt.Errorf("convstore: create: %w", err)
	}
	defer tx.Rollback(ctx)
	if s.limits.MaxPerTenant > 0 {
		// Creations of one tenant take turns, in all replicas, until
		// commit: each counts what the one before it committed (read
		// committed takes a new snapshot per statement).
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`,
			int32(pgLockClass), tenant); err != nil {
			return Summary{}, fmt.Errorf("convstore: create: lock: %w", err)
		}
	}
	if s.limits.TTL > 0 {
		if _, err := tx.Exec(ctx,
			`DELETE FROM conversations WHERE tenant = $1 AND updated <= $2`,
			tenant, s.cutoff(now)); err != nil {
			return Summary{}, fmt.Errorf("convstore: create: drop expired: %w", err)
		}
	}
	if s.limits.MaxPerTenant > 0 {
		var n int
		if err := tx.QueryRow(ctx,
			`SELECT count(*) FROM conversations WHERE tenant = $1`, tenant).Scan(&n); err != nil {
			return Summary{}, fmt.Errorf("convstore: create: count: %w", err)
		}
		if n >= s.limits.MaxPerTenant {
			return Summary{}, fmt.Errorf("convstore: create: tenant keeps %d conversations, the most allowed: %w", n, ErrFull)
		}
	}
	// As in SQLite: never overwrite on the all but impossible clash.
	for range 3 {
		id, err := newID()
		if err != nil {
			return Summary{}, err
		}
		tag, err := tx.Exec(ctx,
			`INSERT INTO conversations (id, tenant, created, updated) VALUES ($1, $2, $3, $4)
			 ON CONFLICT (id) DO NOTHING`,
			id, tenant, now, now)
		if err != nil {
			return Summary{}, fmt.Errorf("convstore: create: %w", err)
		}
		if tag.RowsAffected() == 0 {
			continue
		}
		if err := tx.Commit(ctx); err != nil {
			return Summary{}, fmt.Errorf("convstore: create: commit: %w", err)
		}
		return Summary{ID: id, Created: fromNano(now), Updated: fromNano(now)}, nil
	}
	return Summary{}, errors.New("convstore: create: could not draw a free id")
}

// Get implements Store.
func (s *pgStore) Get(ctx context.Context, tenant, id string) (Conversation, error) {
	if err := checkIDArgs(tenant, id); err != nil {
		return Conversation{}, fmt.Errorf("convstore: get: %w", err)
	}
	now := s.nowNano()
	tx, err := s.pool.BeginTx(ctx, readOnly)
	if err != nil {
		return Conversation{}, fmt.Errorf("convstore: get: %w", err)
	}
	defer tx.Rollback(ctx)
	var c Conversation
	var created, updated int64
	err = tx.QueryRow(ctx,
		`SELECT id, created, updated, messages, bytes FROM conversations
		 WHERE tenant = $1 AND id = $2`,
		tenant, id).Scan(&c.ID, &created, &updated, &c.Messages, &c.Bytes)
	if errors.Is(err, pgx.ErrNoRows) {
		return Conversation{}, fmt.Errorf("convstore: get: %w", ErrNotFound)
	}
	if err != nil {
		return Conversation{}, fmt.Errorf("convstore: get: %w", err)
	}
	if updated <= s.cutoff(now) {
		tx.Rollback(ctx)
		s.dropExpired(ctx, tenant, id, now)
		return Conversation{}, fmt.Errorf("convstore: get: %w", ErrNotFound)
	}
	c.Created, c.Updated = fromNano(created), fromNano(updated)
	rows, err := tx.Query(ctx,
		`SELECT m.role, m.content FROM messages AS m
		 JOIN conversations AS c ON c.id = m.conversation_id
		 WHERE c.tenant = $1 AND c.id = $2
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

// dropExpired deletes one conversation found expired by a read, best
// effort (see the SQLite store's).
func (s *pgStore) dropExpired(ctx context.Context, tenant, id string, now int64) {
	_, _ = s.pool.Exec(ctx,
		`DELETE FROM conversations WHERE tenant = $1 AND id = $2 AND updated <= $3`,
		tenant, id, s.cutoff(now))
}

// Append implements Store. The conversation's row stays locked from the
// first read to commit, so concurrent Appends, from any replica, queue and
// each sees the counts the one before it left: limits hold and sequence
// numbers do not clash.
func (s *pgStore) Append(ctx context.Context, tenant, id string, msgs ...abi.Message) (Summary, error) {
	if err := checkIDArgs(tenant, id); err != nil {
		return Summary{}, fmt.Errorf("convstore: append: %w", err)
	}
	size, err := checkMessages(msgs)
	if err != nil {
		return Summary{}, fmt.Errorf("convstore: append: %w", err)
	}
	now := s.nowNano()
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return Summary{}, fmt.Errorf("convstore: append: %w", err)
	}
	defer tx.Rollback(ctx)
	var count int
	var bytes, updated int64
	err = tx.QueryRow(ctx,
		`SELECT messages, bytes, updated FROM conversations
		 WHERE tenant = $1 AND id = $2 FOR UPDATE`,
		tenant, id).Scan(&count, &bytes, &updated)
	if errors.Is(err, pgx.ErrNoRows) {
		return Summary{}, fmt.Errorf("convstore: append: %w", ErrNotFound)
	}
	if err != nil {
		return Summary{}, fmt.Errorf("convstore: append: %w", err)
	}
	if updated <= s.cutoff(now) {
		if _, err := tx.Exec(ctx,
			`DELETE FROM conversations WHERE tenant = $1 AND id = $2`, tenant, id); err == nil {
			_ = tx.Commit(ctx) // best effort, as in dropExpired
		}
		return Summary{}, fmt.Errorf("convstore: append: %w", ErrNotFound)
	}
	if m := s.limits.MaxMessages; m > 0 && count+len(msgs) > m {
		return Summary{}, fmt.Errorf("convstore: append: %d messages + %d would exceed %d: %w", count, len(msgs), m, ErrFull)
	}
	if m := s.limits.MaxBytes; m > 0 && bytes+size > m {
		return Summary{}, fmt.Errorf("convstore: append: %d bytes + %d would exceed %d: %w", bytes, size, m, ErrFull)
	}
	roles := make([]string, len(msgs))
	contents := make([]string, len(msgs))
	for i, m := range msgs {
		roles[i], contents[i] = m.Role, m.Content
	}
	// All messages in one statement, numbered count+1, count+2, ...
	tag, err := tx.Exec(ctx,
		`INSERT INTO messages (conversation_id, seq, role, content)
		 SELECT c.id, $3 + m.ord, m.role, m.content
		 FROM conversations AS c,
		      unnest($4::text[], $5::text[]) WITH ORDINALITY AS m (role, content, ord)
		 WHERE c.tenant = $1 AND c.id = $2`,
		tenant, id, count, roles, contents)
	if err != nil {
		return Summary{}, fmt.Errorf("convstore: append messages: %w", err)
	}
	if n := tag.RowsAffected(); n != int64(len(msgs)) {
		return Summary{}, fmt.Errorf("convstore: append: %d of %d messages stored", n, len(msgs))
	}
	var sum Summary
	var created int64
	err = tx.QueryRow(ctx,
		`UPDATE conversations
		 SET messages = messages + $3, bytes = bytes + $4, updated = greatest(updated, $5)
		 WHERE tenant = $1 AND id = $2
		 RETURNING id, created, updated, messages, bytes`,
		tenant, id, len(msgs), size, now).Scan(&sum.ID, &created, &updated, &sum.Messages, &sum.Bytes)
	if err != nil {
		return Summary{}, fmt.Errorf("convstore: append: update: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return Summary{}, fmt.Errorf("convstore: append: commit: %w", err)
	}
	sum.Created, sum.Updated = fromNano(created), fromNano(updated)
	return sum, nil
}

// List implements Store.
func (s *pgStore) List(ctx context.Context, tenant string, limit int, before string) ([]Summary, error) {
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
	tx, err := s.pool.BeginTx(ctx, readOnly)
	if err != nil {
		return nil, fmt.Errorf("convstore: list: %w", err)
	}
	defer tx.Rollback(ctx)
	query := `SELECT id, created, updated, messages, bytes FROM conversations
		 WHERE tenant = $1 AND updated > $2
		 ORDER BY updated DESC, id DESC
		 LIMIT $3`
	args := []any{tenant, cut, limit}
	if before != "" {
		var curUpdated int64
		err := tx.QueryRow(ctx,
			`SELECT updated FROM conversations WHERE tenant = $1 AND id = $2 AND updated > $3`,
			tenant, before, cut).Scan(&curUpdated)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("convstore: list: before: %w", ErrNotFound)
		}
		if err != nil {
			return nil, fmt.Errorf("convstore: list: %w", err)
		}
		query = `SELECT id, created, updated, messages, bytes FROM conversations
		 WHERE tenant = $1 AND updated > $2 AND (updated, id) < ($3, $4)
		 ORDER BY updated DESC, id DESC
		 LIMIT $5`
		args = []any{tenant, cut, curUpdated, before, limit}
	}
	rows, err := tx.Query(ctx, query, args...)
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
func (s *pgStore) Delete(ctx context.Context, tenant, id string) error {
	if err := checkIDArgs(tenant, id); err != nil {
		return fmt.Errorf("convstore: delete: %w", err)
	}
	now := s.nowNano()
	var updated int64
	err := s.pool.QueryRow(ctx,
		`DELETE FROM conversations WHERE tenant = $1 AND id = $2 RETURNING updated`,
		tenant, id).Scan(&updated)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("convstore: delete: %w", ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("convstore: delete: %w", err)
	}
	if updated <= s.cutoff(now) {
		return fmt.Errorf("convstore: delete: %w", ErrNotFound)
	}
	return nil
}

// Sweep implements Store, in batches of sweepBatch. It is the one query not
// scoped by tenant. Rows another transaction holds (an Append under way)
// are skipped: that Append renews or deletes them itself.
func (s *pgStore) Sweep(ctx context.Context) (int, error) {
	if s.limits.TTL <= 0 {
		return 0, nil
	}
	cut := s.cutoff(s.nowNano())
	total := 0
	for {
		tag, err := s.pool.Exec(ctx,
			`DELETE FROM conversations WHERE id IN (
			   SELECT id FROM conversations WHERE updated <= $1
			   LIMIT $2 FOR UPDATE SKIP LOCKED)`,
			cut, sweepBatch)
		if err != nil {
			return total, fmt.Errorf("convstore: sweep: %w", err)
		}
		n := int(tag.RowsAffected())
		total += n
		if n < sweepBatch {
			return total, nil
		}
	}
}

// Close implements Store.
func (s *pgStore) Close() error {
	s.pool.Close()
	return nil
}
