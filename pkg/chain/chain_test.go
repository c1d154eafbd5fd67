package chain

import (
	"database/sql"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 26, 6, 0, 0, 0, time.UTC)

func newStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "chain.db"), Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func snapEvent(kind Kind, at time.Time, name string) Event {
	return Event{Time: at, Kind: kind, Payload: SnapshotPayload{
		Source: "root", SourcePath: "/", Snapshot: "/.snapshots/ghostbridge/root/" + name,
		UUID: "uuid-" + name, ParentUUID: "parent", Generation: 7, OTime: at,
	}}
}

// fill appends n snapshot.created blocks a second apart.
func fill(t *testing.T, s *Store, n int) []Block {
	t.Helper()
	evs := make([]Event, n)
	for i := range evs {
		at := t0.Add(time.Duration(i) * time.Second)
		evs[i] = snapEvent(KindSnapshotCreated, at, at.Format("20060102T150405.000Z"))
	}
	bs, err := s.Append(t.Context(), evs...)
	if err != nil {
		t.Fatal(err)
	}
	return bs
}

func TestOpenCreatesPrivateDatabaseWithGenesis(t *testing.T) {
	s := newStore(t)
	st, err := os.Stat(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("database mode %v, want 0600", st.Mode().Perm())
	}
	head, err := s.Head(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if head.Height != 0 || head.Kind != KindGenesis || !head.Prev.IsZero() {
		t.Fatalf("head after create = %+v, want genesis at 0 linking to zero", head)
	}
	var g GenesisPayload
	if err := json.Unmarshal(head.Payload, &g); err != nil || g.Format != Format || g.ChainID == "" {
		t.Fatalf("genesis payload %s: %v", head.Payload, err)
	}
	id, err := s.ChainID(t.Context())
	if err != nil || id != g.ChainID {
		t.Fatalf("ChainID = %q, %v; genesis says %q", id, err, g.ChainID)
	}
	for _, suffix := range []string{"-wal", "-shm"} {
		if st, err := os.Stat(s.Path() + suffix); err == nil && st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", suffix, st.Mode().Perm())
		}
	}
}

func TestOpenRefusesWhatIsNotAChain(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.db")
	if _, err := Open(t.Context(), missing, Options{}); !errors.Is(err, ErrNoDatabase) {
		t.Errorf("Open(missing) = %v, want ErrNoDatabase", err)
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open without Create left %s behind", missing)
	}

	foreign := filepath.Join(dir, "foreign.db")
	db, err := sql.Open("sqlite", foreign)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE accounts (id INTEGER)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := Open(t.Context(), foreign, Options{Create: true}); !errors.Is(err, ErrNotChain) {
		t.Errorf("Open(foreign) = %v, want ErrNotChain", err)
	}

	text := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(text, []byte("not a database at all, just text that is long enough"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(t.Context(), text, Options{}); !errors.Is(err, ErrNotChain) {
		t.Errorf("Open(text file) = %v, want ErrNotChain", err)
	}

	s := newStore(t)
	if _, err := s.db.Exec(`PRAGMA user_version = 99`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := Open(t.Context(), s.Path(), Options{}); !errors.Is(err, ErrNotChain) {
		t.Errorf("Open(newer schema) = %v, want ErrNotChain", err)
	}
}

func TestReopenKeepsChain(t *testing.T) {
	s := newStore(t)
	fill(t, s, 3)
	s.Close()
	s2, err := Open(t.Context(), s.Path(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	head, err := s2.Head(t.Context())
	if err != nil || head.Height != 3 {
		t.Fatalf("head after reopen = %d, %v; want 3", head.Height, err)
	}
}

func TestAppendLinksBlocksAndKeepsTimeMonotonic(t *testing.T) {
	s := newStore(t)
	bs := fill(t, s, 2)
	back, err := s.Append(t.Context(), snapEvent(KindSnapshotCreated, t0.Add(-time.Hour), "stepped-back"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := back[0].Time, bs[1].Time; !got.Equal(want) {
		t.Errorf("block after a clock step back has time %v, want clamped to %v", got, want)
	}
	if back[0].Prev != bs[1].Hash || back[0].Height != 3 {
		t.Errorf("block 3 = %+v, want height 3 linking to %s", back[0], bs[1].Hash)
	}
	if _, err := s.Append(t.Context(), Event{Kind: "made.up", Payload: struct{}{}}); err == nil {
		t.Error("Append accepted an unknown kind")
	}
	if _, err := s.Append(t.Context(), Event{Kind: KindTicksMissed, Payload: []int{1}}); err == nil {
		t.Error("Append accepted a payload that is not an object")
	}
	got, err := s.Get(t.Context(), 2)
	if err != nil || got.Hash != bs[1].Hash {
		t.Fatalf("Get(2) = %+v, %v", got, err)
	}
	if _, err := s.Get(t.Context(), 99); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(99) = %v, want ErrNotFound", err)
	}
}

func TestLiveFollowsSnapshotBlocks(t *testing.T) {
	s := newStore(t)
	_, err := s.Append(t.Context(),
		snapEvent(KindSnapshotCreated, t0, "a"),
		snapEvent(KindSnapshotCreated, t0.Add(time.Second), "b"),
		snapEvent(KindSnapshotAdopted, t0.Add(2*time.Second), "c"),
		snapEvent(KindSnapshotDeleted, t0.Add(3*time.Second), "a"),
		snapEvent(KindSnapshotVanished, t0.Add(3*time.Second), "c"),
	)
	if err != nil {
		t.Fatal(err)
	}
	live, err := s.Live(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(live) != 1 || live[0].Snapshot != "/.snapshots/ghostbridge/root/b" || live[0].Height != 2 {
		t.Fatalf("live = %+v, want only b recorded at height 2", live)
	}
}

func TestBlocksQuery(t *testing.T) {
	s := newStore(t)
	fill(t, s, 5)
	if _, err := s.Append(t.Context(), Event{Time: t0.Add(time.Minute), Kind: KindTicksMissed, Payload: TicksMissedPayload{Count: 2}}); err != nil {
		t.Fatal(err)
	}
	heights := func(bs []Block) (hs []uint64) {
		for _, b := range bs {
			hs = append(hs, b.Height)
		}
		return hs
	}
	for _, tc := range []struct {
		name string
		q    Query
		want []uint64
	}{
		{"all", Query{}, []uint64{0, 1, 2, 3, 4, 5, 6}},
		{"range", Query{From: 2, To: 4}, []uint64{2, 3, 4}},
		{"first two", Query{Limit: 2}, []uint64{0, 1}},
		{"newest two", Query{Limit: 2, Newest: true}, []uint64{5, 6}},
		{"kind", Query{Kinds: []Kind{KindTicksMissed, KindGenesis}}, []uint64{0, 6}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bs, err := s.Blocks(t.Context(), tc.q)
			if err != nil {
				t.Fatal(err)
			}
			if got := heights(bs); !equal(got, tc.want) {
				t.Errorf("heights %v, want %v", got, tc.want)
			}
		})
	}
}

func equal(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestRecordEncodingIsStable(t *testing.T) {
	// The encoding is a public contract (README "Chain format"): these
	// bytes and this hash must never change.
	b := Block{
		Height:  42,
		Time:    time.Unix(1764136800, 123456789).UTC(),
		Kind:    KindSnapshotCreated,
		Payload: json.RawMessage(`{"source":"root","snapshot":"/s/20251126T060000.123Z"}`),
	}
	b.Prev[0], b.Prev[31] = 0xab, 0x01
	const want = `ghostbridge.block.v1 42 1764136800123456789 snapshot.created ab00000000000000000000000000000000000000000000000000000000000001 {"source":"root","snapshot":"/s/20251126T060000.123Z"}`
	if got := string(b.Record()); got != want {
		t.Fatalf("record\n got %s\nwant %s", got, want)
	}
	parsed, err := ParseRecord([]byte(want))
	if err != nil {
		t.Fatal(err)
	}
	if parsed.Height != b.Height || !parsed.Time.Equal(b.Time) || parsed.Prev != b.Prev || string(parsed.Payload) != string(b.Payload) {
		t.Fatalf("ParseRecord = %+v, want %+v", parsed, b)
	}
}

func TestParseRecordRejects(t *testing.T) {
	zero := "0000000000000000000000000000000000000000000000000000000000000000"
	for _, rec := range []string{
		"",
		"ghostbridge.block.v2 1 1 snapshot.created " + zero + " {}",
		"ghostbridge.block.v1 01 1 snapshot.created " + zero + " {}",
		"ghostbridge.block.v1 1 -0 snapshot.created " + zero + " {}",
		"ghostbridge.block.v1 1 1 snapshot.eaten " + zero + " {}",
		"ghostbridge.block.v1 1 1 snapshot.created " + zero[:63] + "A {}",
		"ghostbridge.block.v1 1 1 snapshot.created " + zero + " { }",
		"ghostbridge.block.v1 1 1 snapshot.created " + zero + " []",
		"ghostbridge.block.v1 1 1 snapshot.created " + zero + " {\"a\":\"\n\"}",
	} {
		if _, err := ParseRecord([]byte(rec)); !errors.Is(err, ErrBadRecord) {
			t.Errorf("ParseRecord(%q) = %v, want ErrBadRecord", rec, err)
		}
	}
}

func FuzzParseRecord(f *testing.F) {
	f.Add([]byte(`ghostbridge.block.v1 42 1764136800123456789 snapshot.created ab00000000000000000000000000000000000000000000000000000000000001 {"source":"root"}`))
	f.Add([]byte(`ghostbridge.block.v1 0 -5 chain.genesis 0000000000000000000000000000000000000000000000000000000000000000 {}`))
	f.Add([]byte(`ghostbridge.block.v1 1 1 ticks.missed 00 {"count":1}`))
	f.Fuzz(func(t *testing.T, rec []byte) {
		b, err := ParseRecord(rec)
		if err != nil {
			if !errors.Is(err, ErrBadRecord) {
				t.Fatalf("error %v does not wrap ErrBadRecord", err)
			}
			return
		}
		if got := b.Record(); string(got) != string(rec) {
			t.Fatalf("round trip changed the record:\n in %q\nout %q", rec, got)
		}
	})
}
