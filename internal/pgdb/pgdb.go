// Package pgdb opens the PostgreSQL databases MDSA's stores share between
// replicas (kept conversations, knowledge bases) the one way they are all
// opened: a pgx pool from a URL that never appears in an error (it may hold
// a password), and a schema brought up to date by numbered migrations
// under an advisory lock, so that replicas starting together take turns.
package pgdb

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Schema names what Open migrates: Table holds the version (one row);
// LockClass is the advisory lock class that serialises migrations;
// Migrations[i] moves the version i to i+1 (append, never edit).
type Schema struct {
	Table      string
	LockClass  int32
	Migrations []string
}

// Open connects to url and brings s up to date; a database of a newer
// schema is refused.
func Open(ctx context.Context, url string, s Schema) (*pgxpool.Pool, error) {
	if url == "" {
		return nil, errors.New("empty PostgreSQL URL")
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("bad URL: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := migrate(ctx, pool, s); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

// migrate applies the migrations the database lacks, in one transaction.
func migrate(ctx context.Context, pool *pgxpool.Pool, s Schema) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, 0)`, s.LockClass); err != nil {
		return fmt.Errorf("migrate: lock: %w", err)
	}
	// The table name is the caller's constant, not input.
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+s.Table+` (
		one     boolean NOT NULL PRIMARY KEY DEFAULT true CHECK (one),
		version integer NOT NULL
	)`); err != nil {
		return fmt.Errorf("migrate: version table: %w", err)
	}
	var version int
	err = tx.QueryRow(ctx, `SELECT version FROM `+s.Table).Scan(&version)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("migrate: read version: %w", err)
	}
	if version > len(s.Migrations) {
		return fmt.Errorf("migrate: schema version %d is newer than this program's %d", version, len(s.Migrations))
	}
	if version == len(s.Migrations) {
		return nil
	}
	for v := version; v < len(s.Migrations); v++ {
		if _, err := tx.Exec(ctx, s.Migrations[v]); err != nil {
			return fmt.Errorf("migrate to version %d: %w", v+1, err)
		}
	}
	if _, err := tx.Exec(ctx, `INSERT INTO `+s.Table+` (version) VALUES ($1)
		 ON CONFLICT (one) DO UPDATE SET version = excluded.version`, len(s.Migrations)); err != nil {
		return fmt.Errorf("migrate: set version: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("migrate: commit: %w", err)
	}
	return nil
}
