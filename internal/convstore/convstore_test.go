package convstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/mdsa-go/mdsa/internal/testutil"

	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// clock is a settable time source for the stores' Now option.
type clock = testutil.Clock

func newClock() *clock { return testutil.NewClock() }

// open opens a SQLite store on a file in a temporary directory.
func open(t testing.TB, l Limits, opts ...Option) Store {
	t.Helper()
	return storeKinds[0].open(t, l, opts...)
}

// opener opens a fresh, empty store, closed when the test ends.
type opener func(t testing.TB, l Limits, opts ...Option) Store

// storeKind is one implementation of Store, for the behavioural tests,
// which run against each.
type storeKind struct {
	name string
	// openRaw opens a fresh, empty store; the caller closes it.
	openRaw func(t testing.TB, l Limits, opts ...Option) (Store, error)
}

// storeKinds are the implementations every behavioural test runs against.
// The PostgreSQL one needs Debian's server (make setup-servers): without it
// those subtests skip (fail under CI).
var storeKinds = []storeKind{
	{"sqlite", func(t testing.TB, l Limits, opts ...Option) (Store, error) {
		return OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "conv.db"), l, opts...)
	}},
	{"postgres", func(t testing.TB, l Limits, opts ...Option) (Store, error) {
		return OpenPostgres(context.Background(), pgDatabase(t), l, opts...)
	}},
}

// open opens a fresh store of kind k, closed when the test ends.
func (k storeKind) open(t testing.TB, l Limits, opts ...Option) Store {
	t.Helper()
	s, err := k.openRaw(t, l, opts...)
	if err != nil {
		t.Fatalf("open %s store: %v", k.name, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// forEachKind runs f as a subtest per store kind.
func forEachKind(t *testing.T, f func(t *testing.T, k storeKind)) {
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) { f(t, k) })
	}
}

// forEachStore runs f as a subtest per store kind, with the kind's opener.
func forEachStore(t *testing.T, f func(t *testing.T, open opener)) {
	forEachKind(t, func(t *testing.T, k storeKind) { f(t, k.open) })
}

func msg(role, content string) abi.Message { return abi.Message{Role: role, Content: content} }

func mustCreate(t testing.TB, s Store, tenant string) Summary {
	t.Helper()
	sum, err := s.Create(context.Background(), tenant)
	if err != nil {
		t.Fatalf("Create(%q): %v", tenant, err)
	}
	return sum
}

func mustAppend(t testing.TB, s Store, tenant, id string, msgs ...abi.Message) Summary {
	t.Helper()
	sum, err := s.Append(context.Background(), tenant, id, msgs...)
	if err != nil {
		t.Fatalf("Append(%q, %q): %v", tenant, id, err)
	}
	return sum
}

func mustGet(t testing.TB, s Store, tenant, id string) Conversation {
	t.Helper()
	c, err := s.Get(context.Background(), tenant, id)
	if err != nil {
		t.Fatalf("Get(%q, %q): %v", tenant, id, err)
	}
	return c
}

func ids(sums []Summary) []string {
	out := make([]string, len(sums))
	for i, s := range sums {
		out[i] = s.ID
	}
	return out
}

// countRows counts the rows of a table, of all tenants, bypassing the API.
func countRows(t testing.TB, s Store, table string) int {
	t.Helper()
	var n int
	// table is one of this test's constants, never input.
	query := `SELECT count(*) FROM ` + table
	var err error
	switch s := s.(type) {
	case *sqliteStore:
		err = s.w.QueryRow(query).Scan(&n)
	case *pgStore:
		err = s.pool.QueryRow(context.Background(), query).Scan(&n)
	default:
		t.Fatalf("countRows: unknown store %T", s)
	}
	if err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return n
}

func TestRoundTrip(t *testing.T) {
	forEachStore(t, func(t *testing.T, open opener) {
		clk := newClock()
		s := open(t, Limits{}, WithClock(clk.Now))
		t0 := clk.Now()

		c := mustCreate(t, s, "acme")
		if !validID(c.ID) {
			t.Fatalf("id %q is not conv_ + 24 hex", c.ID)
		}
		if !c.Created.Equal(t0) || !c.Updated.Equal(t0) || c.Messages != 0 || c.Bytes != 0 {
			t.Fatalf("new summary = %+v", c)
		}
		empty := mustGet(t, s, "acme", c.ID)
		if empty.History == nil || len(empty.History) != 0 {
			t.Fatalf("empty history = %#v, want empty non-nil", empty.History)
		}

		want := []abi.Message{
			msg(abi.RoleSystem, "You are terse."),
			msg(abi.RoleUser, "héllo wörld — 世界 🎉 👩‍👩‍👧 e\u0301"),
			msg(abi.RoleAssistant, "مرحبا\n\ttabs and\r\nnewlines 'quotes' \"dq\" ; DROP TABLE messages; --"),
		}
		clk.Advance(time.Second)
		sum := mustAppend(t, s, "acme", c.ID, want[0], want[1])
		if sum.Messages != 2 || sum.ID != c.ID || !sum.Updated.Equal(t0.Add(time.Second)) || !sum.Created.Equal(t0) {
			t.Fatalf("summary after first append = %+v", sum)
		}
		want = append(want, msg(abi.RoleUser, ""), msg(abi.RoleUser, strings.Repeat("ß", 10000)))
		clk.Advance(time.Second)
		sum = mustAppend(t, s, "acme", c.ID, want[2:]...)

		var bytes int64
		for _, m := range want {
			bytes += int64(len(m.Content))
		}
		if sum.Messages != len(want) || sum.Bytes != bytes {
			t.Fatalf("summary = %+v, want %d messages, %d bytes", sum, len(want), bytes)
		}
		got := mustGet(t, s, "acme", c.ID)
		if !slices.Equal(got.History, want) {
			t.Fatalf("history = %q\nwant %q", got.History, want)
		}
		if got.Summary != sum {
			t.Fatalf("Get summary = %+v, Append said %+v", got.Summary, sum)
		}

		// JSON shape: History is "messages" (it hides Summary.Messages).
		b, err := json.Marshal(got)
		if err != nil {
			t.Fatal(err)
		}
		var shape map[string]json.RawMessage
		if err := json.Unmarshal(b, &shape); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"id", "created", "updated", "messages", "bytes"} {
			if _, ok := shape[k]; !ok {
				t.Errorf("JSON %s lacks %q", b[:min(len(b), 200)], k)
			}
		}
		var back Conversation
		if err := json.Unmarshal(b, &back); err != nil || !slices.Equal(back.History, want) {
			t.Errorf("JSON round trip: %v", err)
		}
	})
}

func TestTenantIsolation(t *testing.T) {
	forEachStore(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		s := open(t, Limits{})
		a := mustCreate(t, s, "tenant-a")
		mustAppend(t, s, "tenant-a", a.ID, msg(abi.RoleUser, "secret of A"))

		if _, err := s.Get(ctx, "tenant-b", a.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("B Get A's = %v, want ErrNotFound", err)
		}
		if _, err := s.Append(ctx, "tenant-b", a.ID, msg(abi.RoleUser, "injected")); !errors.Is(err, ErrNotFound) {
			t.Errorf("B Append A's = %v, want ErrNotFound", err)
		}
		if err := s.Delete(ctx, "tenant-b", a.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("B Delete A's = %v, want ErrNotFound", err)
		}
		if l, err := s.List(ctx, "tenant-b", 100, ""); err != nil || len(l) != 0 {
			t.Errorf("B List = %v, %v; want empty", l, err)
		}
		if _, err := s.List(ctx, "tenant-b", 100, a.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("B List before A's id = %v, want ErrNotFound", err)
		}
		// A prefix or case variant of the tenant is another tenant.
		for _, other := range []string{"tenant-", "Tenant-a", "tenant-a ", "tenant-a%"} {
			if _, err := s.Get(ctx, other, a.ID); !errors.Is(err, ErrNotFound) {
				t.Errorf("Get as %q = %v, want ErrNotFound", other, err)
			}
		}

		// A's conversation is untouched.
		got := mustGet(t, s, "tenant-a", a.ID)
		if len(got.History) != 1 || got.History[0].Content != "secret of A" {
			t.Fatalf("A's history = %q", got.History)
		}
		if l, err := s.List(ctx, "tenant-a", 10, ""); err != nil || len(l) != 1 || l[0].ID != a.ID {
			t.Fatalf("A List = %v, %v", l, err)
		}
		if err := s.Delete(ctx, "tenant-a", a.ID); err != nil {
			t.Fatalf("A Delete: %v", err)
		}
	})
}

func TestLimitsMessages(t *testing.T) {
	forEachStore(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		s := open(t, Limits{MaxMessages: 3})
		c := mustCreate(t, s, "t")
		mustAppend(t, s, "t", c.ID, msg("user", "1"), msg("assistant", "2"))
		if _, err := s.Append(ctx, "t", c.ID, msg("user", "3"), msg("assistant", "4")); !errors.Is(err, ErrFull) {
			t.Fatalf("over MaxMessages = %v, want ErrFull", err)
		}
		if got := mustGet(t, s, "t", c.ID); got.Messages != 2 || len(got.History) != 2 {
			t.Fatalf("after refused append: %+v", got)
		}
		mustAppend(t, s, "t", c.ID, msg("user", "3"))
		if _, err := s.Append(ctx, "t", c.ID, msg("user", "4")); !errors.Is(err, ErrFull) {
			t.Fatalf("at MaxMessages = %v, want ErrFull", err)
		}
		if n := countRows(t, s, "messages"); n != 3 {
			t.Fatalf("%d message rows, want 3", n)
		}
	})
}

func TestLimitsBytes(t *testing.T) {
	forEachStore(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		s := open(t, Limits{MaxBytes: 10})
		c := mustCreate(t, s, "t")
		mustAppend(t, s, "t", c.ID, msg("user", "12345"))
		if _, err := s.Append(ctx, "t", c.ID, msg("assistant", "123"), msg("user", "456")); !errors.Is(err, ErrFull) {
			t.Fatalf("over MaxBytes = %v, want ErrFull", err)
		}
		got := mustGet(t, s, "t", c.ID)
		if got.Bytes != 5 || len(got.History) != 1 {
			t.Fatalf("after refused append: %+v", got)
		}
		// Bytes, not runes: "éé" is 4 bytes, 5+4 fits, then 1 more does not.
		if sum := mustAppend(t, s, "t", c.ID, msg("user", "éé")); sum.Bytes != 9 {
			t.Fatalf("bytes = %d, want 9", sum.Bytes)
		}
		mustAppend(t, s, "t", c.ID, msg("user", "x"))
		if _, err := s.Append(ctx, "t", c.ID, msg("user", "y")); !errors.Is(err, ErrFull) {
			t.Fatalf("at MaxBytes = %v, want ErrFull", err)
		}
		// A single message larger than the whole budget.
		c2 := mustCreate(t, s, "t")
		if _, err := s.Append(ctx, "t", c2.ID, msg("user", strings.Repeat("z", 11))); !errors.Is(err, ErrFull) {
			t.Fatalf("huge message = %v, want ErrFull", err)
		}
	})
}

func TestLimitsPerTenant(t *testing.T) {
	forEachStore(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		s := open(t, Limits{MaxPerTenant: 2})
		a1 := mustCreate(t, s, "a")
		mustCreate(t, s, "a")
		if _, err := s.Create(ctx, "a"); !errors.Is(err, ErrFull) {
			t.Fatalf("third Create = %v, want ErrFull", err)
		}
		mustCreate(t, s, "b") // another tenant has its own quota
		if err := s.Delete(ctx, "a", a1.ID); err != nil {
			t.Fatal(err)
		}
		mustCreate(t, s, "a")
		if n := countRows(t, s, "conversations"); n != 3 {
			t.Fatalf("%d conversations, want 3", n)
		}
	})
}

func TestTTL(t *testing.T) {
	forEachStore(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		clk := newClock()
		s := open(t, Limits{TTL: time.Hour, MaxPerTenant: 2}, WithClock(clk.Now))

		c1 := mustCreate(t, s, "t")
		c2 := mustCreate(t, s, "t")
		mustAppend(t, s, "t", c1.ID, msg("user", "old"))
		clk.Advance(30 * time.Minute)
		mustAppend(t, s, "t", c2.ID, msg("user", "fresher"))
		clk.Advance(30 * time.Minute) // c1 is exactly TTL old: expired

		if _, err := s.Get(ctx, "t", c1.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get expired = %v, want ErrNotFound", err)
		}
		if _, err := s.Append(ctx, "t", c1.ID, msg("user", "revive?")); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Append expired = %v, want ErrNotFound", err)
		}
		if err := s.Delete(ctx, "t", c1.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Delete expired = %v, want ErrNotFound", err)
		}
		if l, err := s.List(ctx, "t", 10, ""); err != nil || !slices.Equal(ids(l), []string{c2.ID}) {
			t.Fatalf("List = %v, %v; want only c2", ids(l), err)
		}
		// The lazy deletion removed c1 and its message.
		if n := countRows(t, s, "messages"); n != 1 {
			t.Fatalf("%d message rows, want 1", n)
		}

		// Expired conversations do not count against MaxPerTenant.
		c3 := mustCreate(t, s, "t")
		clk.Advance(30*time.Minute + time.Nanosecond) // c2 expires, c3 does not
		other := mustCreate(t, s, "u")
		_ = other
		n, err := s.Sweep(ctx)
		if err != nil || n != 1 {
			t.Fatalf("Sweep = %d, %v; want 1", n, err)
		}
		if n := countRows(t, s, "messages"); n != 0 {
			t.Fatalf("%d message rows after Sweep, want 0", n)
		}
		mustGet(t, s, "t", c3.ID)
		clk.Advance(2 * time.Hour)
		if n, err := s.Sweep(ctx); err != nil || n != 2 {
			t.Fatalf("second Sweep = %d, %v; want 2", n, err)
		}
		if n := countRows(t, s, "conversations"); n != 0 {
			t.Fatalf("%d conversations left", n)
		}

		// Without a TTL nothing expires.
		s2 := open(t, Limits{}, WithClock(clk.Now))
		c := mustCreate(t, s2, "t")
		clk.Advance(100 * 365 * 24 * time.Hour)
		mustGet(t, s2, "t", c.ID)
		if n, err := s2.Sweep(ctx); err != nil || n != 0 {
			t.Fatalf("Sweep without TTL = %d, %v", n, err)
		}
	})
}

func TestSweepBatches(t *testing.T) {
	forEachStore(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		clk := newClock()
		s := open(t, Limits{TTL: time.Minute}, WithClock(clk.Now))
		const n = sweepBatch*2 + 7
		for i := range n {
			mustCreate(t, s, fmt.Sprintf("t%d", i%5))
		}
		clk.Advance(time.Minute)
		if got, err := s.Sweep(ctx); err != nil || got != n {
			t.Fatalf("Sweep = %d, %v; want %d", got, err, n)
		}
	})
}

func TestListOrderAndPagination(t *testing.T) {
	forEachStore(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		clk := newClock()
		s := open(t, Limits{}, WithClock(clk.Now))
		var cs []Summary
		for range 7 {
			clk.Advance(time.Second)
			cs = append(cs, mustCreate(t, s, "t"))
		}
		mustCreate(t, s, "other")
		clk.Advance(time.Second)
		mustAppend(t, s, "t", cs[2].ID, msg("user", "bump"))

		want := []string{cs[2].ID, cs[6].ID, cs[5].ID, cs[4].ID, cs[3].ID, cs[1].ID, cs[0].ID}
		all, err := s.List(ctx, "t", 100, "")
		if err != nil || !slices.Equal(ids(all), want) {
			t.Fatalf("List = %v, %v\nwant %v", ids(all), err, want)
		}
		if all[0].Messages != 1 || all[0].Bytes != 4 {
			t.Fatalf("summary in list = %+v", all[0])
		}
		var paged []string
		before := ""
		for page := 0; ; page++ {
			l, err := s.List(ctx, "t", 3, before)
			if err != nil {
				t.Fatalf("page %d: %v", page, err)
			}
			if len(l) > 3 {
				t.Fatalf("page %d has %d items", page, len(l))
			}
			if len(l) == 0 {
				break
			}
			paged = append(paged, ids(l)...)
			before = l[len(l)-1].ID
		}
		if !slices.Equal(paged, want) {
			t.Fatalf("pages = %v\nwant %v", paged, want)
		}

		// Ties on Updated are broken by id, and pagination still sees each once.
		s2 := open(t, Limits{}, WithClock(clk.Now))
		var tied []string
		for range 5 {
			tied = append(tied, mustCreate(t, s2, "t").ID)
		}
		slices.Sort(tied)
		slices.Reverse(tied)
		paged, before = nil, ""
		for {
			l, err := s2.List(ctx, "t", 2, before)
			if err != nil {
				t.Fatal(err)
			}
			if len(l) == 0 {
				break
			}
			paged = append(paged, ids(l)...)
			before = l[len(l)-1].ID
		}
		if !slices.Equal(paged, tied) {
			t.Fatalf("tied pages = %v\nwant %v", paged, tied)
		}

		// Bad cursors.
		if _, err := s.List(ctx, "t", 3, "conv_nope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("malformed before = %v", err)
		}
		if _, err := s.List(ctx, "t", 3, "conv_000000000000000000000000"); !errors.Is(err, ErrNotFound) {
			t.Errorf("unknown before = %v", err)
		}
	})
}

func TestListLimitClamp(t *testing.T) {
	forEachStore(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		s := open(t, Limits{})
		for range MaxListLimit + 5 {
			mustCreate(t, s, "t")
		}
		for _, tc := range []struct{ limit, want int }{
			{0, DefaultListLimit}, {-3, DefaultListLimit}, {1, 1}, {100, 100}, {101, 100}, {1 << 30, 100},
		} {
			l, err := s.List(ctx, "t", tc.limit, "")
			if err != nil || len(l) != tc.want {
				t.Errorf("List(limit %d) = %d items, %v; want %d", tc.limit, len(l), err, tc.want)
			}
		}
	})
}

var malformedIDs = []string{
	"",
	"conv_",
	"conv_123",
	"conv_0123456789abcdef0123456",   // 23 hex
	"conv_0123456789abcdef012345678", // 25 hex
	"conv_0123456789ABCDEF01234567",  // upper case
	"conv_0123456789abcdef0123456g",
	"CONV_0123456789abcdef01234567",
	"xonv_0123456789abcdef01234567",
	" conv_0123456789abcdef01234567",
	"conv_0123456789abcdef01234567 ",
	"conv_0123456789abcdef0123456\x00",
	"conv_' OR '1'='1' --         ",
	"../../etc/passwd",
	"conv_0123456789abcdef012345é",
	"%",
}

func TestMalformedIDs(t *testing.T) {
	forEachKind(t, func(t *testing.T, k storeKind) { testMalformedIDs(t, k) })
}

func testMalformedIDs(t *testing.T, k storeKind) {
	ctx := context.Background()
	s := k.open(t, Limits{})
	c := mustCreate(t, s, "t")
	mustAppend(t, s, "t", c.ID, msg("user", "x"))
	check := func(s Store, when string) {
		for _, id := range malformedIDs {
			if _, err := s.Get(ctx, "t", id); !errors.Is(err, ErrNotFound) {
				t.Errorf("%s: Get(%q) = %v, want ErrNotFound", when, id, err)
			}
			if _, err := s.Append(ctx, "t", id, msg("user", "y")); !errors.Is(err, ErrNotFound) {
				t.Errorf("%s: Append(%q) = %v, want ErrNotFound", when, id, err)
			}
			if err := s.Delete(ctx, "t", id); !errors.Is(err, ErrNotFound) {
				t.Errorf("%s: Delete(%q) = %v, want ErrNotFound", when, id, err)
			}
			if id != "" {
				if _, err := s.List(ctx, "t", 10, id); !errors.Is(err, ErrNotFound) {
					t.Errorf("%s: List(before %q) = %v, want ErrNotFound", when, id, err)
				}
			}
		}
	}
	check(s, "open")
	if got := mustGet(t, s, "t", c.ID); len(got.History) != 1 {
		t.Fatalf("history = %q", got.History)
	}
	// The ids are refused before any query: a closed store answers the same.
	closed, err := k.openRaw(t, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if err := closed.Close(); err != nil {
		t.Fatal(err)
	}
	check(closed, "closed")
}

func TestInvalidInput(t *testing.T) {
	forEachKind(t, func(t *testing.T, k storeKind) { testInvalidInput(t, k) })
	ctx := context.Background()
	if _, err := OpenSQLite(ctx, "", Limits{}); err == nil {
		t.Error("empty path accepted")
	}
	if _, err := OpenPostgres(ctx, "", Limits{}); err == nil {
		t.Error("empty URL accepted")
	}
}

func testInvalidInput(t *testing.T, k storeKind) {
	ctx := context.Background()
	s := k.open(t, Limits{})
	c := mustCreate(t, s, "t")
	bad := []abi.Message{
		msg("", "x"),
		msg("System", "x"),
		msg("tool", "x"),
		msg("user ", "x"),
		msg("developer", "x"),
		msg("user", "bad \xff utf-8"),
		msg("user", "half \xe2\x82"),
		msg("user", "nul \x00 byte"),
	}
	for _, m := range bad {
		if _, err := s.Append(ctx, "t", c.ID, m); !errors.Is(err, ErrInvalid) {
			t.Errorf("Append(%q) = %v, want ErrInvalid", m, err)
		}
		// One bad message spoils the whole batch.
		if _, err := s.Append(ctx, "t", c.ID, msg("user", "good"), m); !errors.Is(err, ErrInvalid) {
			t.Errorf("Append(good, %q) = %v, want ErrInvalid", m, err)
		}
	}
	if _, err := s.Append(ctx, "t", c.ID); !errors.Is(err, ErrInvalid) {
		t.Errorf("Append() = %v, want ErrInvalid", err)
	}
	if got := mustGet(t, s, "t", c.ID); len(got.History) != 0 {
		t.Fatalf("bad appends stored %q", got.History)
	}
	for _, tenant := range []string{"", strings.Repeat("x", MaxTenantLen+1), "a\x00b", "\xff"} {
		if _, err := s.Create(ctx, tenant); !errors.Is(err, ErrInvalid) {
			t.Errorf("Create(%q) = %v, want ErrInvalid", tenant, err)
		}
		if _, err := s.Get(ctx, tenant, c.ID); !errors.Is(err, ErrInvalid) {
			t.Errorf("Get(%q) = %v, want ErrInvalid", tenant, err)
		}
		if _, err := s.List(ctx, tenant, 10, ""); !errors.Is(err, ErrInvalid) {
			t.Errorf("List(%q) = %v, want ErrInvalid", tenant, err)
		}
	}
	mustCreate(t, s, strings.Repeat("x", MaxTenantLen))

	for _, l := range []Limits{{MaxBytes: -1}, {MaxMessages: -1}, {MaxPerTenant: -1}, {TTL: -time.Second}} {
		if s, err := k.openRaw(t, l); err == nil {
			s.Close()
			t.Errorf("negative limit %+v accepted", l)
		}
	}
}

func TestDeleteCascades(t *testing.T) {
	forEachStore(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		s := open(t, Limits{})
		c := mustCreate(t, s, "t")
		keep := mustCreate(t, s, "t")
		mustAppend(t, s, "t", c.ID, msg("user", "a"), msg("assistant", "b"))
		mustAppend(t, s, "t", keep.ID, msg("user", "c"))
		if err := s.Delete(ctx, "t", c.ID); err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(ctx, "t", c.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("second Delete = %v", err)
		}
		if _, err := s.Get(ctx, "t", c.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get deleted = %v", err)
		}
		if n := countRows(t, s, "messages"); n != 1 {
			t.Fatalf("%d message rows, want 1 (cascade)", n)
		}
	})
}

func TestConcurrentAppends(t *testing.T) {
	forEachStore(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		s := open(t, Limits{})
		c := mustCreate(t, s, "t")
		const workers, each = 8, 40
		var wg sync.WaitGroup
		errs := make(chan error, workers*each*3)
		for g := range workers {
			wg.Go(func() {
				for i := range each {
					if _, err := s.Append(ctx, "t", c.ID, msg("user", fmt.Sprintf("g%d-%d", g, i))); err != nil {
						errs <- err
					}
				}
			})
		}
		// Readers and other writers alongside.
		for g := range 4 {
			wg.Go(func() {
				for range each / 2 {
					if _, err := s.Get(ctx, "t", c.ID); err != nil {
						errs <- fmt.Errorf("get: %w", err)
					}
					if _, err := s.List(ctx, "t", 10, ""); err != nil {
						errs <- fmt.Errorf("list: %w", err)
					}
					if _, err := s.Create(ctx, fmt.Sprintf("other%d", g)); err != nil {
						errs <- fmt.Errorf("create: %w", err)
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		got := mustGet(t, s, "t", c.ID)
		if len(got.History) != workers*each || got.Messages != workers*each {
			t.Fatalf("%d messages (summary %d), want %d", len(got.History), got.Messages, workers*each)
		}
		next := make([]int, workers)
		for _, m := range got.History {
			var g, i int
			if _, err := fmt.Sscanf(m.Content, "g%d-%d", &g, &i); err != nil {
				t.Fatalf("content %q: %v", m.Content, err)
			}
			if i != next[g] {
				t.Fatalf("goroutine %d: message %d came where %d was due", g, i, next[g])
			}
			next[g]++
		}
	})
}

func TestReopen(t *testing.T) {
	ctx := context.Background()
	if _, err := OpenSQLite(ctx, filepath.Join(t.TempDir(), "missing", "conv.db"), Limits{}); err == nil {
		t.Fatal("opened a file in a missing directory")
	}
	// Characters that mean something in a URI must survive dsn.
	path := filepath.Join(t.TempDir(), "odd ?#%name.db")
	s, err := OpenSQLite(ctx, path, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	c := mustCreate(t, s, "t")
	want := []abi.Message{msg("user", "persist me ✓"), msg("assistant", "ok")}
	mustAppend(t, s, "t", c.ID, want...)
	var mode string
	if err := s.(*sqliteStore).w.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v", mode, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = OpenSQLite(ctx, path, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	got := mustGet(t, s, "t", c.ID)
	if !slices.Equal(got.History, want) {
		t.Fatalf("after reopen: %q", got.History)
	}
	var version int
	if err := s.(*sqliteStore).w.QueryRow(`PRAGMA user_version`).Scan(&version); err != nil || version != len(migrations) {
		t.Fatalf("user_version = %d, %v", version, err)
	}
	// A schema from the future is refused.
	if _, err := s.(*sqliteStore).w.Exec(`PRAGMA user_version = 99`); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err := OpenSQLite(ctx, path, Limits{}); err == nil {
		s.Close()
		t.Fatal("opened a database of schema version 99")
	}
}

func TestMemory(t *testing.T) {
	s, err := OpenSQLite(context.Background(), MemoryPath, Limits{TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := mustCreate(t, s, "t")
	mustAppend(t, s, "t", c.ID, msg("user", "x"))
	if got := mustGet(t, s, "t", c.ID); len(got.History) != 1 {
		t.Fatalf("history = %q", got.History)
	}
}

func TestContextCanceled(t *testing.T) {
	forEachStore(t, func(t *testing.T, open opener) {
		s := open(t, Limits{})
		c := mustCreate(t, s, "t")
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := s.Append(ctx, "t", c.ID, msg("user", "x")); !errors.Is(err, context.Canceled) {
			t.Errorf("Append with canceled ctx = %v", err)
		}
		if got := mustGet(t, s, "t", c.ID); len(got.History) != 0 {
			t.Fatalf("history = %q", got.History)
		}
	})
}

// FuzzAppend appends one message with fuzzed role, content and id, and checks
// that the outcome matches the rules and nothing else changed.
func FuzzAppend(f *testing.F) {
	f.Add("user", "hello", "conv_0123456789abcdef01234567")
	f.Add("assistant", "héllo 🎉", "")
	f.Add("system", "a\x00b", "conv_")
	f.Add("tool", "\xff\xfe", "CONV_0123456789ABCDEF01234567")
	f.Add("user", strings.Repeat("x", 600), "' OR 1=1 --")
	const maxBytes = 512
	s, err := OpenSQLite(context.Background(), MemoryPath, Limits{MaxBytes: maxBytes, MaxMessages: 2})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	f.Fuzz(func(t *testing.T, role, content, id string) {
		ctx := context.Background()
		c := mustCreate(t, s, "t")
		defer func() {
			if err := s.Delete(ctx, "t", c.ID); err != nil {
				t.Fatalf("Delete: %v", err)
			}
		}()
		m := msg(role, content)

		validRole := role == abi.RoleSystem || role == abi.RoleUser || role == abi.RoleAssistant
		validText := utf8.ValidString(content) && !strings.Contains(content, "\x00")

		// A fuzzed id names no conversation. A malformed id is refused
		// first; a well-formed one after the messages are checked.
		if id != c.ID {
			_, err := s.Append(ctx, "t", id, m)
			wantInvalid := validID(id) && (!validRole || !validText)
			if wantInvalid && !errors.Is(err, ErrInvalid) || !wantInvalid && !errors.Is(err, ErrNotFound) {
				t.Fatalf("Append(%q, %q) to fuzzed id %q = %v", role, content, id, err)
			}
			if _, err := s.Get(ctx, "t", id); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Get fuzzed id %q = %v", id, err)
			}
		}
		sum, err := s.Append(ctx, "t", c.ID, m)
		switch {
		case !validRole || !validText:
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Append(%q, %q) = %v, want ErrInvalid", role, content, err)
			}
		case len(content) > maxBytes:
			if !errors.Is(err, ErrFull) {
				t.Fatalf("Append of %d bytes = %v, want ErrFull", len(content), err)
			}
		default:
			if err != nil {
				t.Fatalf("Append(%q, %q) = %v", role, content, err)
			}
			if sum.Messages != 1 || sum.Bytes != int64(len(content)) {
				t.Fatalf("summary = %+v", sum)
			}
		}
		got := mustGet(t, s, "t", c.ID)
		if err == nil {
			if len(got.History) != 1 || got.History[0] != m || got.Bytes != int64(len(content)) {
				t.Fatalf("stored %q (%d bytes), want %q", got.History, got.Bytes, m)
			}
		} else if len(got.History) != 0 || got.Messages != 0 || got.Bytes != 0 {
			t.Fatalf("failed Append stored %q", got.History)
		}

		// Other tenants, the fuzzed strings among them, see nothing.
		for _, tenant := range []string{"u", content, role, id} {
			if tenant == "t" {
				continue
			}
			if _, err := s.Get(ctx, tenant, c.ID); !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrInvalid) {
				t.Fatalf("Get as tenant %q = %v", tenant, err)
			}
			l, err := s.List(ctx, tenant, 10, "")
			if err == nil && len(l) != 0 {
				t.Fatalf("List as tenant %q = %v", tenant, l)
			}
		}
	})
}

func BenchmarkAppend(b *testing.B) {
	content := strings.Repeat("lorem ipsum ", 21) // 252 bytes
	for _, kind := range []string{"file", "memory"} {
		b.Run(kind, func(b *testing.B) {
			var s Store
			if kind == "file" {
				s = open(b, Limits{})
			} else {
				var err error
				if s, err = OpenSQLite(context.Background(), MemoryPath, Limits{}); err != nil {
					b.Fatal(err)
				}
				defer s.Close()
			}
			c := mustCreate(b, s, "t")
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Append(ctx, "t", c.ID, abi.Message{Role: "user", Content: content}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
