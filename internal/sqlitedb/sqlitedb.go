// Package sqlitedb opens the SQLite databases MDSA keeps for its tenants
// (kept conversations, knowledge bases) the one way they are all opened:
// SQLite compiled to Go (ncruces/go-sqlite3, no cgo), WAL with a busy
// timeout and foreign keys, writes through one connection of their own so
// that concurrent writers queue instead of failing with SQLITE_BUSY, reads
// through a pool of read-only connections beside it, and a schema brought
// up to date by numbered migrations (PRAGMA user_version). It also holds
// the id and tenant checks those stores share.
package sqlitedb

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/ncruces/go-sqlite3"
	"github.com/ncruces/go-sqlite3/driver"
)

// MemoryPath opens a private in-memory database (one connection, lost on
// Close); meant for tests.
const MemoryPath = ":memory:"

// BusyTimeoutMS is how long a connection waits for a lock held by another
// connection (or process) before failing with SQLITE_BUSY.
const BusyTimeoutMS = 10000

// ReaderConns is the size of the pool of read-only connections of a file
// database.
const ReaderConns = 4

// DB is an open database: W, a pool of exactly one connection, for every
// write; R, read-only connections that WAL lets run beside the writer (R is
// W for MemoryPath).
type DB struct {
	W, R *sql.DB
}

// Open opens (creating it if needed) the database at path and applies the
// migrations it lacks (migrations[i] moves PRAGMA user_version i to i+1;
// append, never edit); a database from a newer program is refused. init,
// when set, runs on every new connection (to register an extension).
func Open(ctx context.Context, path string, migrations []string, init func(*sqlite3.Conn) error) (*DB, error) {
	if path == "" {
		return nil, errors.New("open: empty path")
	}
	var inits []func(*sqlite3.Conn) error
	if init != nil {
		inits = append(inits, init)
	}
	memory := path == MemoryPath
	w, err := driver.Open(dsn(path, []string{
		fmt.Sprintf("busy_timeout(%d)", BusyTimeoutMS), "foreign_keys(1)", "journal_mode(wal)", "synchronous(normal)",
	}), inits...)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	db := &DB{W: w, R: w}
	if err := db.init(ctx, memory, migrations); err != nil {
		w.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if !memory {
		r, err := driver.Open(dsn(path, []string{fmt.Sprintf("busy_timeout(%d)", BusyTimeoutMS), "query_only(1)"}), inits...)
		if err != nil {
			w.Close()
			return nil, fmt.Errorf("open %s: %w", path, err)
		}
		r.SetMaxOpenConns(ReaderConns)
		r.SetMaxIdleConns(ReaderConns)
		db.R = r
	}
	return db, nil
}

// Close closes both pools.
func (d *DB) Close() error {
	var errR error
	if d.R != d.W {
		errR = d.R.Close()
	}
	return errors.Join(d.W.Close(), errR)
}

// dsn returns the driver's URI for path with the given PRAGMAs.
func dsn(path string, pragmas []string) string {
	q := url.Values{"_pragma": pragmas}.Encode()
	if path == MemoryPath {
		return "file::memory:?" + q
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	p := filepath.ToSlash(path)
	if !strings.HasPrefix(p, "/") {
		p = "/" + p // a Windows drive letter
	}
	u := url.URL{Scheme: "file", Path: p, RawQuery: q}
	return u.String()
}

// init checks the journal mode and brings the schema up to date.
func (d *DB) init(ctx context.Context, memory bool, migrations []string) error {
	var mode string
	if err := d.W.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil {
		return fmt.Errorf("journal mode: %w", err)
	}
	if !memory && !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("journal mode is %q, not WAL", mode)
	}
	return d.migrate(ctx, migrations)
}

// migrate applies the migrations the database lacks, in one transaction.
func (d *DB) migrate(ctx context.Context, migrations []string) error {
	tx, err := d.W.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback()
	var version int
	if err := tx.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&version); err != nil {
		return fmt.Errorf("migrate: read version: %w", err)
	}
	if version > len(migrations) {
		return fmt.Errorf("migrate: schema version %d is newer than this program's %d", version, len(migrations))
	}
	if version == len(migrations) {
		return nil
	}
	for v := version; v < len(migrations); v++ {
		if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
			return fmt.Errorf("migrate to version %d: %w", v+1, err)
		}
	}
	// PRAGMA takes no parameters; the value is the caller's constant.
	if _, err := tx.ExecContext(ctx, fmt.Sprintf(`PRAGMA user_version = %d`, len(migrations))); err != nil {
		return fmt.Errorf("migrate: set version: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate: commit: %w", err)
	}
	return nil
}

// idHexLen is the length of the random part of an id.
const idHexLen = 24

// NewID returns a fresh random id: prefix and 24 lowercase hex digits.
func NewID(prefix string) (string, error) {
	var b [idHexLen / 2]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random id: %w", err)
	}
	return prefix + hex.EncodeToString(b[:]), nil
}

// ValidID reports whether id has the form NewID(prefix) gives.
func ValidID(id, prefix string) bool {
	if len(id) != len(prefix)+idHexLen || !strings.HasPrefix(id, prefix) {
		return false
	}
	for i := len(prefix); i < len(id); i++ {
		c := id[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// CheckTenant says what is wrong with a tenant name, if anything: empty,
// longer than maxLen bytes, or not UTF-8 text.
func CheckTenant(tenant string, maxLen int) error {
	switch {
	case tenant == "":
		return errors.New("empty tenant")
	case len(tenant) > maxLen:
		return fmt.Errorf("tenant longer than %d bytes", maxLen)
	case !utf8.ValidString(tenant) || strings.IndexByte(tenant, 0) >= 0:
		return errors.New("tenant is not valid UTF-8 text")
	}
	return nil
}
