package diag

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ghostbridge/ghostbridge/internal/testenv"
	"github.com/ghostbridge/ghostbridge/pkg/chain"
)

// TestDiagIsReadOnly: every check that reads the chain database (the
// chain and snapshots groups, vector.lag) leaves an empty file, a
// database of an older schema and a healthy database a writer holds open
// (blocks still in its -wal file) byte for byte as they were, creates no
// -wal or -shm file, and says what is wrong with the first two instead of
// making them a chain.
func TestDiagIsReadOnly(t *testing.T) {
	h := newSnapHost(t, 3)
	dir := t.TempDir()

	empty := filepath.Join(dir, "empty.db")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// A chain as schema version 2 wrote it: no cursors table.
	older := filepath.Join(dir, "older.db")
	src, err := os.ReadFile(h.db)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(older, src, 0o600); err != nil {
		t.Fatal(err)
	}
	testenv.SQLite3(t, older, "DROP TABLE cursors; PRAGMA user_version = 2; PRAGMA journal_mode = DELETE;")

	// The healthy host's database with a writer holding it open and its
	// last blocks only in the -wal file, as while snap run runs.
	w := h.open(t, false)
	defer w.Close()
	if _, err := w.Append(t.Context(), chain.Event{Time: h.last(t), Kind: chain.KindTicksMissed, Payload: chain.TicksMissedPayload{Count: 1}}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(h.db + "-wal"); err != nil || fi.Size() == 0 {
		t.Fatalf("no blocks in the -wal file: %v", err)
	}

	tests := []struct {
		name, db string
		want     map[string]string // check: status and detail fragment
	}{
		{"empty file", empty, map[string]string{
			"snapshots.loop": "fail: chain database " + empty + ": not a ghostbridge chain database: the file is empty (0 bytes)",
			"chain.verify":   "fail: not a ghostbridge chain database",
			"vector.lag":     "fail: not a ghostbridge chain database",
		}},
		{"older schema", older, map[string]string{
			"snapshots.loop": "fail: schema version 2 is older than this ghostbridge's (3)",
			"chain.head_age": "fail: schema version 2 is older",
			"vector.lag":     "fail: schema version 2 is older",
		}},
		{"healthy, writer open", h.db, map[string]string{
			"snapshots.loop": "pass: (height 4, ticks.missed)",
			"chain.verify":   "pass: 5 blocks verified up to height 4",
			"vector.lag":     "pass: is 5 blocks behind head 4",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := testenv.SQLiteFilesOf(t, tt.db)
			in := ChainInputs{DB: tt.db, Now: func() time.Time { return h.last(t).Add(time.Second) }}
			checks := append(SnapshotChecks(in, h.cfg, nil), ChainChecks(in)...)
			lag, err := Select(VectorChecks(VectorInputs{DB: tt.db, Collection: "blocks", LagMax: 60}), []string{"vector.lag"}, nil)
			if err != nil {
				t.Fatal(err)
			}
			r := Run(t.Context(), append(checks, lag...), Options{Timeout: time.Minute})
			for name, want := range tt.want {
				status, detail, _ := strings.Cut(want, ": ")
				ExpectCheck(t, r, name, Status(status), "", detail)
			}
			before.Unchanged(t)
		})
	}
}

// TestChainScopeSharesOneStore: within a run the checks get the same
// read-only store, closed only once the run has ended and the last
// check holding it has let go.
func TestChainScopeSharesOneStore(t *testing.T) {
	h := newSnapHost(t, 1)
	sc := &chainScope{}
	a, o, releaseA := sc.acquire(t.Context(), h.db)
	if o != nil {
		t.Fatal(o)
	}
	b, o, releaseB := sc.acquire(t.Context(), h.db)
	if o != nil {
		t.Fatal(o)
	}
	if a != b {
		t.Fatal("two checks of one run opened the database twice")
	}
	releaseA()
	sc.end()
	if _, err := b.Head(t.Context()); err != nil {
		t.Fatalf("store closed under a check still using it: %v", err)
	}
	releaseB()
	if _, err := b.Head(t.Context()); err == nil {
		t.Fatal("store still open after the run and its checks ended")
	}
}
