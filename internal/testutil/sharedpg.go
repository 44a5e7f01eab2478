package testutil

import (
	"context"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// SharedPostgres is one PostgreSQL server for all of a test package's
// tests: the first Database call starts it, each call creates a fresh
// database on it, and the package's TestMain calls Stop.
type SharedPostgres struct {
	// Prefix names the databases: Prefix_1, Prefix_2, ... It must be a
	// valid SQL identifier (it is written into CREATE DATABASE as is).
	Prefix string

	once sync.Once
	srv  *PostgresServer
	err  error
	dbs  atomic.Int64
}

// Database creates a fresh database and returns its URL. It skips the
// test when PostgreSQL is not installed (fails under CI, as
// RequirePostgres does).
func (p *SharedPostgres) Database(t testing.TB) string {
	t.Helper()
	RequirePostgres(t)
	p.once.Do(func() {
		start := time.Now()
		p.srv, p.err = NewPostgres()
		if p.err == nil {
			t.Logf("PostgreSQL started in %v", time.Since(start).Round(time.Millisecond))
		}
	})
	if p.err != nil {
		t.Fatalf("starting PostgreSQL: %v", p.err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.srv.URL)
	if err != nil {
		t.Fatalf("connect to PostgreSQL: %v", err)
	}
	defer conn.Close(ctx)
	name := fmt.Sprintf("%s_%d", p.Prefix, p.dbs.Add(1))
	// name is made here from the test's own prefix, never input.
	if _, err := conn.Exec(ctx, `CREATE DATABASE `+name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	u, err := url.Parse(p.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

// Stop stops the server if Database started it.
func (p *SharedPostgres) Stop() {
	if p.srv != nil {
		p.srv.Stop()
	}
}
