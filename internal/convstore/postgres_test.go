package convstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mdsa-go/mdsa/internal/testutil"
)

// pgShared is the one PostgreSQL server of this package's tests, stopped
// by TestMain; every store gets a database of its own on it.
var pgShared = testutil.SharedPostgres{Prefix: "convstore"}

func TestMain(m *testing.M) {
	code := m.Run()
	pgShared.Stop()
	os.Exit(code)
}

// pgDatabase creates a fresh database on the shared server and returns its
// URL (see testutil.SharedPostgres.Database).
func pgDatabase(t testing.TB) string {
	t.Helper()
	return pgShared.Database(t)
}

// pgExec runs a statement on the store's database, bypassing the API.
func pgExec(t testing.TB, s Store, sql string, args ...any) {
	t.Helper()
	if _, err := s.(*pgStore).pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// TestPostgresReplicasAppend appends to one conversation from two stores on
// one database, as two replicas would: every append lands once, in order,
// and MaxMessages holds exactly.
func TestPostgresReplicasAppend(t *testing.T) {
	ctx := context.Background()
	db := pgDatabase(t)
	const limit, replicas, workers, each = 100, 2, 4, 20 // 160 tries for 100 places
	var stores []Store
	for range replicas {
		s, err := OpenPostgres(ctx, db, Limits{MaxMessages: limit})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		stores = append(stores, s)
	}
	c := mustCreate(t, stores[0], "t")
	var ok, full atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, replicas*workers*each)
	for r, s := range stores {
		for w := range workers {
			wg.Go(func() {
				for i := range each {
					_, err := s.Append(ctx, "t", c.ID, msg("user", fmt.Sprintf("r%d-w%d-%d", r, w, i)))
					switch {
					case err == nil:
						ok.Add(1)
					case errors.Is(err, ErrFull):
						full.Add(1)
					default:
						errs <- err
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if ok.Load() != limit || full.Load() != replicas*workers*each-limit {
		t.Fatalf("%d appends stored, %d refused; want %d and %d", ok.Load(), full.Load(), limit, replicas*workers*each-limit)
	}
	got := mustGet(t, stores[1], "t", c.ID)
	if len(got.History) != limit || got.Messages != limit {
		t.Fatalf("%d messages (summary %d), want %d", len(got.History), got.Messages, limit)
	}
	// Each writer's messages are in its order, none twice.
	next := map[string]int{}
	for _, m := range got.History {
		var r, w, i int
		if _, err := fmt.Sscanf(m.Content, "r%d-w%d-%d", &r, &w, &i); err != nil {
			t.Fatalf("content %q: %v", m.Content, err)
		}
		key := fmt.Sprintf("r%d-w%d", r, w)
		if i < next[key] {
			t.Fatalf("%s: message %d after %d", key, i, next[key]-1)
		}
		next[key] = i + 1
	}
	if n := countRows(t, stores[0], "messages"); n != limit {
		t.Fatalf("%d message rows, want %d", n, limit)
	}
}

// TestPostgresReplicasCreate creates conversations of one tenant from two
// stores at once: MaxPerTenant holds across them.
func TestPostgresReplicasCreate(t *testing.T) {
	ctx := context.Background()
	db := pgDatabase(t)
	const limit, replicas, workers = 5, 2, 8
	var stores []Store
	for range replicas {
		s, err := OpenPostgres(ctx, db, Limits{MaxPerTenant: limit})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		stores = append(stores, s)
	}
	var ok, full atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, replicas*workers*2)
	for _, s := range stores {
		for range workers {
			wg.Go(func() {
				for _, tenant := range []string{"a", "b"} {
					_, err := s.Create(ctx, tenant)
					switch {
					case err == nil:
						ok.Add(1)
					case errors.Is(err, ErrFull):
						full.Add(1)
					default:
						errs <- err
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if ok.Load() != 2*limit {
		t.Fatalf("%d created, %d refused; want %d created", ok.Load(), full.Load(), 2*limit)
	}
	for _, tenant := range []string{"a", "b"} {
		if l, err := stores[1].List(ctx, tenant, 100, ""); err != nil || len(l) != limit {
			t.Fatalf("tenant %s keeps %d, %v; want %d", tenant, len(l), err, limit)
		}
	}
}

// TestPostgresSchema opens one database from several stores at once (the
// schema is created once), checks the version, and refuses a newer schema.
func TestPostgresSchema(t *testing.T) {
	ctx := context.Background()
	db := pgDatabase(t)
	var wg sync.WaitGroup
	stores := make([]Store, 4)
	errs := make([]error, len(stores))
	for i := range stores {
		wg.Go(func() { stores[i], errs[i] = OpenPostgres(ctx, db, Limits{}) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("concurrent open %d: %v", i, err)
		}
		t.Cleanup(func() { stores[i].Close() })
	}
	c := mustCreate(t, stores[0], "t")
	mustAppend(t, stores[1], "t", c.ID, msg("user", "persist me ✓"))
	stores[2].Close()
	s, err := OpenPostgres(ctx, db, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if got := mustGet(t, s, "t", c.ID); len(got.History) != 1 || got.History[0].Content != "persist me ✓" {
		t.Fatalf("after reopen: %q", got.History)
	}
	var version int
	if err := s.(*pgStore).pool.QueryRow(ctx, `SELECT version FROM convstore_schema`).Scan(&version); err != nil || version != len(pgMigrations) {
		t.Fatalf("schema version = %d, %v; want %d", version, err, len(pgMigrations))
	}
	pgExec(t, s, `UPDATE convstore_schema SET version = 99`)
	if s, err := OpenPostgres(ctx, db, Limits{}); err == nil {
		s.Close()
		t.Fatal("opened a database of schema version 99")
	}

	// A bad URL is refused without repeating its password.
	_, err = OpenPostgres(ctx, "postgres://u:hunter2@host:notaport/db", Limits{})
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("bad URL: %v", err)
	}
}

// TestPostgresExpiredAppend: an Append that finds its conversation
// expired deletes it, messages and all, in the same transaction.
func TestPostgresExpiredAppend(t *testing.T) {
	clk := newClock()
	s := storeKinds[1].open(t, Limits{TTL: time.Minute}, WithClock(clk.Now))
	c := mustCreate(t, s, "t")
	mustAppend(t, s, "t", c.ID, msg("user", "a"), msg("assistant", "b"))
	clk.Advance(time.Minute)
	if _, err := s.Append(context.Background(), "t", c.ID, msg("user", "c")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Append expired = %v, want ErrNotFound", err)
	}
	if n := countRows(t, s, "conversations"); n != 0 {
		t.Fatalf("%d conversations left", n)
	}
	if n := countRows(t, s, "messages"); n != 0 {
		t.Fatalf("%d messages left", n)
	}
}
