package chain

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"testing"
	"time"
)

func TestExport(t *testing.T) {
	s := newStore(t)
	fill(t, s, 5)
	// Bytes encoding/json escapes by default must come out as stored.
	odd := Event{Time: t0.Add(time.Hour), Kind: KindSnapshotCreated, Payload: SnapshotPayload{
		Source: "home", Snapshot: "/snaps/<a&b>\u2028\u2029 \"q\" \\ ünï",
	}}
	if _, err := s.Append(t.Context(), odd); err != nil {
		t.Fatal(err)
	}
	stored, err := s.Blocks(t.Context(), Query{})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	n, err := s.Export(t.Context(), 0, 0, &out)
	if err != nil || n != 7 {
		t.Fatalf("Export = %d, %v; want 7 blocks", n, err)
	}
	sc := bufio.NewScanner(&out)
	var i int
	for sc.Scan() {
		var b Block
		if err := json.Unmarshal(sc.Bytes(), &b); err != nil {
			t.Fatalf("line %d %q: %v", i, sc.Bytes(), err)
		}
		want := stored[i]
		if b.Height != want.Height || !b.Time.Equal(want.Time) || b.Kind != want.Kind || b.Prev != want.Prev || b.Hash != want.Hash || !bytes.Equal(b.Payload, want.Payload) {
			t.Fatalf("line %d: %+v, stored %+v", i, b, want)
		}
		if sha256.Sum256(b.Record()) != b.Hash {
			t.Fatalf("line %d: the exported fields do not rehash to the block's hash", i)
		}
		i++
	}
	if i != 7 {
		t.Fatalf("%d lines, want 7", i)
	}

	out.Reset()
	if n, err := s.Export(t.Context(), 2, 4, &out); err != nil || n != 3 || bytes.Count(out.Bytes(), []byte("\n")) != 3 {
		t.Fatalf("Export(2, 4) = %d, %v:\n%s", n, err, out.Bytes())
	}
	for _, r := range [][2]uint64{{0, 7}, {5, 3}} {
		if _, err := s.Export(t.Context(), r[0], r[1], &out); !errors.Is(err, ErrOutOfRange) {
			t.Errorf("Export(%d, %d) = %v, want ErrOutOfRange", r[0], r[1], err)
		}
	}
}
