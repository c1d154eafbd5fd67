package chain

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"math/bits"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
)

// mth is RFC 6962's Merkle Tree Hash written out from the RFC (section
// 2.1), as an independent reference for what the store computes with
// tlog: leaf = SHA-256(0x00 || record), node = SHA-256(0x01 || l || r),
// split at the largest power of two below n.
func mth(records [][]byte) Hash {
	switch n := len(records); n {
	case 0:
		return sha256.Sum256(nil)
	case 1:
		return sha256.Sum256(append([]byte{0}, records[0]...))
	default:
		k := 1 << (bits.Len(uint(n-1)) - 1)
		l, r := mth(records[:k]), mth(records[k:])
		return sha256.Sum256(append(append([]byte{1}, l[:]...), r[:]...))
	}
}

// referenceRoot computes the root over the store's blocks with mth.
func referenceRoot(t *testing.T, s *Store) Hash {
	t.Helper()
	bs, err := s.Blocks(t.Context(), Query{})
	if err != nil {
		t.Fatal(err)
	}
	recs := make([][]byte, len(bs))
	for i, b := range bs {
		if b.Height != uint64(i) {
			t.Fatalf("block %d at position %d", b.Height, i)
		}
		recs[i] = b.Record()
	}
	return mth(recs)
}

// TestTreeIsRFC6962 appends blocks one at a time and in batches and checks
// after each append that the stored tree's root is RFC 6962's over the
// block records, and that every stored hash is where tlog expects it.
func TestTreeIsRFC6962(t *testing.T) {
	s := newStore(t)
	check := func() {
		t.Helper()
		th, err := s.TreeHead(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		head, _ := s.Head(t.Context())
		if th.Size != head.Height+1 {
			t.Fatalf("tree size %d, head height %d", th.Size, head.Height)
		}
		if want := referenceRoot(t, s); th.Root != want {
			t.Fatalf("size %d: root %s, RFC 6962 gives %s", th.Size, th.Root, want)
		}
		var n int64
		if err := s.db.QueryRow(`SELECT count(*) FROM tree`).Scan(&n); err != nil || n != tlog.StoredHashCount(int64(th.Size)) {
			t.Fatalf("size %d: %d stored hashes (%v), tlog expects %d", th.Size, n, err, tlog.StoredHashCount(int64(th.Size)))
		}
	}
	check()
	for range 20 {
		more(t, s, 1)
		check()
	}
	for _, n := range []int{2, 7, 64, 100} {
		more(t, s, n)
		check()
	}
}

func TestTreeHeadOnTheStoredLeaves(t *testing.T) {
	s := newStore(t)
	bs := fill(t, s, 9)
	var leaf []byte
	if err := s.db.QueryRow(`SELECT hash FROM tree WHERE id = ?`, tlog.StoredHashIndex(0, 4)).Scan(&leaf); err != nil {
		t.Fatal(err)
	}
	if want := tlog.RecordHash(bs[3].Record()); string(leaf) != string(want[:]) {
		t.Fatalf("stored leaf 4 = %x, want RecordHash of block 4 = %x", leaf, want)
	}
}

// TestMigrateVersion1 turns a chain into the schema version 1 the
// foundation wrote (no tree, no checkpoints) and opens it: the migration
// builds the same tree Append would have.
func TestMigrateVersion1(t *testing.T) {
	s := newStore(t)
	fill(t, s, 300)
	want, err := s.TreeHead(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.Exec(`DROP TABLE tree; DROP TABLE checkpoints; PRAGMA user_version = 1`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if v := sqlite3(t, s.Path(), `PRAGMA user_version`); v != "1" {
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
	got, err := s2.TreeHead(t.Context())
	if err != nil || got != want {
		t.Fatalf("migrated tree head %+v, %v; want %+v", got, err, want)
	}
	if _, f := verify(t, s2, VerifyOptions{}); f != nil {
		t.Fatalf("migrated chain: %+v", f)
	}
	more(t, s2, 5)
	if _, f := verify(t, s2, VerifyOptions{}); f != nil {
		t.Fatalf("migrated chain after appends: %+v", f)
	}
}

// TestMigrateVersion1WithGap migrates a damaged version 1 chain: the
// migration fails, naming the missing height, and leaves the file as it
// was (a tree stopped at the gap would make every later append fail).
func TestMigrateVersion1WithGap(t *testing.T) {
	s := newStore(t)
	fill(t, s, 40)
	if _, err := s.db.Exec(`DROP TABLE tree; DROP TABLE checkpoints; PRAGMA user_version = 1; DELETE FROM blocks WHERE height = 20`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2, err := Open(t.Context(), s.Path(), Options{})
	if err == nil {
		s2.Close()
		t.Fatal("a version 1 chain with a missing block was migrated")
	}
	if !errors.Is(err, ErrNotChain) || !strings.Contains(err.Error(), "no block at height 20") {
		t.Fatalf("Open = %v, want ErrNotChain naming height 20", err)
	}
	if v := sqlite3(t, s.Path(), `PRAGMA user_version`); v != "1" {
		t.Errorf("user_version after the failed migration %s, want 1", v)
	}
	if n := sqlite3(t, s.Path(), `SELECT count(*) FROM sqlite_schema WHERE name = 'tree'`); n != "0" {
		t.Errorf("the failed migration left a tree table")
	}
}

func TestOpenRefusesForeignVersion1(t *testing.T) {
	s := newStore(t)
	if _, err := s.db.Exec(`UPDATE meta SET value = 'something-else' WHERE key = 'format'; PRAGMA user_version = 1`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := Open(t.Context(), s.Path(), Options{}); !errors.Is(err, ErrNotChain) {
		t.Fatalf("Open = %v, want ErrNotChain", err)
	}
}
