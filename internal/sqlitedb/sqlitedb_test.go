package sqlitedb

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

func TestOpenMigratesAndRefusesNewer(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "x.db")
	v1 := []string{`CREATE TABLE a (x INTEGER) STRICT;`}
	db, err := Open(ctx, path, v1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.W.Exec(`INSERT INTO a VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.R.Exec(`INSERT INTO a VALUES (2)`); err == nil {
		t.Fatal("the read pool wrote")
	}
	db.Close()
	v2 := append(v1, `CREATE TABLE b (y TEXT) STRICT;`)
	db, err = Open(ctx, path, v2, nil)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.R.QueryRow(`SELECT count(*) FROM a`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d rows, %v", n, err)
	}
	if _, err := db.W.Exec(`INSERT INTO b VALUES ('z')`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := Open(ctx, path, v1, nil); err == nil || !strings.Contains(err.Error(), "newer than this program's 1") {
		t.Fatalf("an older program opened a newer database: %v", err)
	}
	if _, err := Open(ctx, "", v1, nil); err == nil {
		t.Fatal("an empty path opened")
	}
	mem, err := Open(ctx, MemoryPath, v2, nil)
	if err != nil || mem.R != mem.W {
		t.Fatalf("memory: %v", err)
	}
	mem.Close()
}

func TestIDsAndTenants(t *testing.T) {
	id, err := NewID("doc_")
	if err != nil || !ValidID(id, "doc_") || ValidID(id, "conv_") || ValidID(strings.ToUpper(id), "doc_") || ValidID(id+"0", "doc_") {
		t.Fatalf("%q %v", id, err)
	}
	for tenant, ok := range map[string]bool{"acme": true, "": false, strings.Repeat("a", 65): false, "a\x00b": false, "\xff": false} {
		if (CheckTenant(tenant, 64) == nil) != ok {
			t.Errorf("CheckTenant(%q)", tenant)
		}
	}
}
