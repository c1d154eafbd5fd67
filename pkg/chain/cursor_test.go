package chain

import (
	"fmt"
	"testing"
)

func TestCursor(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	if h, ok, err := s.Cursor(ctx, "vector:a"); err != nil || ok || h != 0 {
		t.Fatalf("unset cursor: %d %v %v", h, ok, err)
	}
	for _, h := range []uint64{0, 7, 3} {
		if err := s.SetCursor(ctx, "vector:a", h); err != nil {
			t.Fatal(err)
		}
		if got, ok, err := s.Cursor(ctx, "vector:a"); err != nil || !ok || got != h {
			t.Fatalf("cursor after set %d: %d %v %v", h, got, ok, err)
		}
	}
	if _, ok, _ := s.Cursor(ctx, "vector:b"); ok {
		t.Fatal("cursors of different names share a value")
	}
	// Survives reopening.
	s.Close()
	s2, err := Open(ctx, s.Path(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got, ok, err := s2.Cursor(ctx, "vector:a"); err != nil || !ok || got != 3 {
		t.Fatalf("cursor after reopen: %d %v %v", got, ok, err)
	}
}

// TestMigrateVersion2 opens a database as version 2 left it (no cursors
// table): the migration adds the table and keeps every block.
func TestMigrateVersion2(t *testing.T) {
	s := newStore(t)
	fill(t, s, 50)
	if _, err := s.db.Exec(`DROP TABLE cursors; PRAGMA user_version = 2`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if v := sqlite3(t, s.Path(), `PRAGMA user_version`); v != "2" {
		t.Fatalf("user_version %s", v)
	}
	s2, err := Open(t.Context(), s.Path(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if v := sqlite3(t, s.Path(), `PRAGMA user_version`); v != fmt.Sprint(schemaVersion) {
		t.Fatalf("user_version after open %s, want %d", v, schemaVersion)
	}
	if err := s2.SetCursor(t.Context(), "vector:x", 42); err != nil {
		t.Fatal(err)
	}
	if _, f := verify(t, s2, VerifyOptions{}); f != nil {
		t.Fatalf("migrated chain: %+v", f)
	}
}

// TestCursorsAndDelete lists cursors by prefix (a prefix holding LIKE's
// wildcards matches literally) and deletes one.
func TestCursorsAndDelete(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	for name, h := range map[string]uint64{"vector-skipped/a/7": 7, "vector-skipped/a/12": 12, "vector-skipped/b/3": 3, "vector/a": 40, "vector-skipped/a_x/1": 1} {
		if err := s.SetCursor(ctx, name, h); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Cursors(ctx, "vector-skipped/a/")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[{vector-skipped/a/12 12} {vector-skipped/a/7 7}]" {
		t.Fatalf("cursors %v", got)
	}
	if got, err := s.Cursors(ctx, "vector-skipped/a_"); err != nil || len(got) != 1 {
		t.Fatalf("prefix with a wildcard: %v %v", got, err)
	}
	if err := s.DeleteCursor(ctx, "vector/a"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Cursor(ctx, "vector/a"); ok {
		t.Fatal("deleted cursor still set")
	}
	if err := s.DeleteCursor(ctx, "vector/none"); err != nil {
		t.Fatal(err)
	}
}
