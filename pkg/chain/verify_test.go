package chain

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ghostbridge/ghostbridge/internal/testenv"
)

// sqlite3 edits db with the sqlite3 shell, as someone with write access
// to the file would.
func sqlite3(t *testing.T, db string, statements ...string) string {
	t.Helper()
	return testenv.SQLite3(t, db, statements...)
}

// rehash recomputes the stored hash of block from (keeping its stored
// link) and the hashes and links of every later block, as an attacker who
// knows the format would, so only the semantic checks can catch the edit.
func rehash(t *testing.T, s *Store, from uint64) {
	t.Helper()
	bs, err := s.Blocks(t.Context(), Query{From: from})
	if err != nil {
		t.Fatal(err)
	}
	prev := bs[0].Prev
	for _, b := range bs {
		if b.Height > from {
			b.Prev = prev
		}
		b.Hash = sha256.Sum256(b.Record())
		if _, err := s.db.Exec(`UPDATE blocks SET prev = ?, hash = ? WHERE height = ?`, b.Prev[:], b.Hash[:], int64(b.Height)); err != nil {
			t.Fatal(err)
		}
		prev = b.Hash
	}
}

func TestVerifyCatchesTampering(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, s *Store)
		height uint64
		reason Reason
	}{
		{"payload byte changed", func(t *testing.T, s *Store) {
			sqlite3(t, s.Path(), `UPDATE blocks SET payload = replace(payload, '"generation":7', '"generation":8') WHERE height = 17`)
		}, 17, ReasonHashMismatch},
		{"row deleted", func(t *testing.T, s *Store) {
			sqlite3(t, s.Path(), `DELETE FROM blocks WHERE height = 23`)
		}, 23, ReasonMissingHeight},
		{"two rows swapped", func(t *testing.T, s *Store) {
			sqlite3(t, s.Path(), `UPDATE blocks SET height = 1000000 WHERE height = 30`,
				`UPDATE blocks SET height = 30 WHERE height = 31`,
				`UPDATE blocks SET height = 31 WHERE height = 1000000`)
		}, 30, ReasonReordered},
		{"hash changed", func(t *testing.T, s *Store) {
			sqlite3(t, s.Path(), `UPDATE blocks SET hash = zeroblob(32) WHERE height = 9`)
		}, 9, ReasonHashMismatch},
		{"hash column truncated", func(t *testing.T, s *Store) {
			sqlite3(t, s.Path(), `UPDATE blocks SET hash = x'00' WHERE height = 12`)
		}, 12, ReasonBadRecord},
		{"link changed", func(t *testing.T, s *Store) {
			sqlite3(t, s.Path(), `UPDATE blocks SET prev = zeroblob(32) WHERE height = 5`)
			rehash(t, s, 5)
		}, 5, ReasonBrokenLink},
		{"kind renamed and rehashed", func(t *testing.T, s *Store) {
			sqlite3(t, s.Path(), `UPDATE blocks SET kind = 'snapshot.forged' WHERE height = 40`)
			rehash(t, s, 40)
		}, 40, ReasonUnknownKind},
		{"time moved back and rehashed", func(t *testing.T, s *Store) {
			sqlite3(t, s.Path(), `UPDATE blocks SET time_ns = time_ns - 10000000000 WHERE height = 44`)
			rehash(t, s, 44)
		}, 44, ReasonTimeBackwards},
		{"genesis replaced", func(t *testing.T, s *Store) {
			sqlite3(t, s.Path(), `UPDATE blocks SET kind = 'snapshot.created' WHERE height = 0`)
			rehash(t, s, 0)
		}, 0, ReasonBrokenLink},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			fill(t, s, 50)
			if res, err := s.Verify(t.Context(), VerifyOptions{}); err != nil || !res.OK || res.Checked != 51 {
				t.Fatalf("untouched chain: %+v, %v", res, err)
			}
			tc.tamper(t, s)
			res, err := s.Verify(t.Context(), VerifyOptions{})
			if !errors.Is(err, ErrMismatch) {
				t.Fatalf("Verify after tampering = %v, want ErrMismatch", err)
			}
			if res.OK || res.Failure == nil || res.Failure.Height != tc.height || res.Failure.Reason != tc.reason {
				t.Fatalf("failure = %+v, want %s at height %d", res.Failure, tc.reason, tc.height)
			}
		})
	}
}

// TestVerifyAcrossSegments checks that splitting the work between workers
// reports the same, lowest, failure wherever the segment boundaries fall.
func TestVerifyAcrossSegments(t *testing.T) {
	old := segmentSize
	segmentSize = 7
	t.Cleanup(func() { segmentSize = old })
	s := newStore(t)
	fill(t, s, 100)
	for _, w := range []int{1, 2, 3, 8} {
		res, err := s.Verify(t.Context(), VerifyOptions{Workers: w})
		if err != nil || !res.OK || res.Checked != 101 {
			t.Fatalf("workers=%d: %+v, %v", w, res, err)
		}
		res, err = s.Verify(t.Context(), VerifyOptions{From: 13, To: 60, Workers: w})
		if err != nil || !res.OK || res.Checked != 48 {
			t.Fatalf("workers=%d range 13..60: %+v, %v", w, res, err)
		}
	}
	// Failures at a segment's first block, its last, and a later one.
	sqlite3(t, s.Path(), `UPDATE blocks SET payload = '{}' WHERE height IN (14, 20, 77)`)
	sqlite3(t, s.Path(), `DELETE FROM blocks WHERE height = 90`)
	for _, w := range []int{1, 2, 3, 8} {
		for _, tc := range []struct {
			from, to uint64
			height   uint64
			reason   Reason
		}{
			{0, 0, 14, ReasonHashMismatch},
			{15, 0, 20, ReasonHashMismatch},
			{21, 0, 77, ReasonHashMismatch},
			{78, 0, 90, ReasonMissingHeight},
			{91, 0, 90, ReasonMissingHeight}, // block 91's predecessor is gone
		} {
			res, err := s.Verify(t.Context(), VerifyOptions{From: tc.from, To: tc.to, Workers: w})
			if !errors.Is(err, ErrMismatch) || res.Failure == nil || res.Failure.Height != tc.height || res.Failure.Reason != tc.reason {
				t.Errorf("workers=%d from %d: %+v, %v; want %s at %d", w, tc.from, res.Failure, err, tc.reason, tc.height)
			}
		}
	}
}

func TestVerifyRangeAndProgress(t *testing.T) {
	s := newStore(t)
	fill(t, s, 10)
	if _, err := s.Verify(t.Context(), VerifyOptions{From: 5, To: 11}); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("To beyond head: %v, want ErrOutOfRange", err)
	}
	if _, err := s.Verify(t.Context(), VerifyOptions{From: 8, To: 3}); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("From after To: %v, want ErrOutOfRange", err)
	}
	var last [2]uint64
	res, err := s.Verify(t.Context(), VerifyOptions{From: 2, Progress: func(done, total uint64) { last = [2]uint64{done, total} }})
	if err != nil || !res.OK {
		t.Fatal(res, err)
	}
	if last != [2]uint64{9, 9} {
		t.Errorf("last progress call %v, want [9 9]", last)
	}
	head, _ := s.Head(t.Context())
	if res.HeadHash != head.Hash || res.From != 2 || res.To != 10 {
		t.Errorf("result %+v, want 2..10 ending in %s", res, head.Hash)
	}
}

// TestShellScriptRecomputesHashes runs the documented sqlite3 + sha256sum
// script against a chain this package wrote, then against a tampered copy.
func TestShellScriptRecomputesHashes(t *testing.T) {
	for _, tool := range []string{"sqlite3", "sha256sum", "bash"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Skip(t, tool+" is not installed")
		}
	}
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "..", "testdata", "chain", "verify-chain.sh")
	s := newStore(t)
	fill(t, s, 20)
	odd := Event{Time: t0.Add(time.Hour), Kind: KindSnapshotCreated, Payload: SnapshotPayload{
		Source: "home", SourcePath: "/home dir/with  spaces", Snapshot: `/snaps/ünïcode "quoted" \back\slash	tab`,
	}}
	if _, err := s.Append(t.Context(), odd, Event{Time: t0.Add(2 * time.Hour), Kind: KindTicksMissed, Payload: TicksMissedPayload{Count: 3}}); err != nil {
		t.Fatal(err)
	}
	head, _ := s.Head(t.Context())
	out, err := exec.Command("bash", script, s.Path()).CombinedOutput()
	if err != nil {
		t.Fatalf("verify-chain.sh on a sound chain: %v\n%s", err, out)
	}
	if want := fmt.Sprintf("ok: %d blocks, head %s", head.Height+1, head.Hash); strings.TrimSpace(string(out)) != want {
		t.Fatalf("verify-chain.sh said %q, want %q", out, want)
	}
	sqlite3(t, s.Path(), `UPDATE blocks SET payload = replace(payload, 'home', 'hom3') WHERE height = 21`)
	out, err = exec.Command("bash", script, s.Path()).CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 || !strings.Contains(string(out), "height 21: hash mismatch") {
		t.Fatalf("verify-chain.sh on a tampered chain: %v\n%s", err, out)
	}
}

// TestVerifyFastPathMatchesStoredTree checks that the per-segment subtree
// roots recomputed from the blocks equal the roots tlog stored at append
// time, so a sound chain never falls back to the hash-by-hash comparison.
func TestVerifyFastPathMatchesStoredTree(t *testing.T) {
	old := segmentSize
	segmentSize = 16
	t.Cleanup(func() { segmentSize = old })
	s := newStore(t)
	fill(t, s, 200)
	before := segmentRechecks.Load()
	for _, w := range []int{1, 3} {
		if res, err := s.Verify(t.Context(), VerifyOptions{Workers: w}); err != nil || !res.OK {
			t.Fatalf("workers=%d: %+v, %v", w, res, err)
		}
	}
	if n := segmentRechecks.Load() - before; n != 0 {
		t.Fatalf("%d whole segments fell back to the slow comparison on a sound chain", n)
	}
	sqlite3(t, s.Path(), `UPDATE blocks SET payload = '{}' WHERE height = 40`)
	if res, err := s.Verify(t.Context(), VerifyOptions{}); err == nil || res.Failure == nil || res.Failure.Height != 40 {
		t.Fatalf("tampered chain: %+v, %v", res.Failure, err)
	}
}

// TestReasonHeightless: the reasons about a file, not a block.
func TestReasonHeightless(t *testing.T) {
	for r, want := range map[Reason]bool{
		ReasonCheckpointSignature: true, ReasonCheckpointKey: true, ReasonCheckpointOrigin: true,
		ReasonCheckpointMalformed: true, ReasonBadBundle: true,
		ReasonHashMismatch: false, ReasonTruncated: false, ReasonRolledBack: false,
		ReasonCheckpointMismatch: false, ReasonBadProof: false, ReasonTreeMismatch: false,
	} {
		if got := r.Heightless(); got != want {
			t.Errorf("%s.Heightless() = %v, want %v", r, got, want)
		}
	}
}

// TestReadConn covers the verifier's own connection: it reads what the
// store wrote, refuses a missing file instead of creating it, and cannot
// write.
func TestReadConn(t *testing.T) {
	s := newStore(t)
	fill(t, s, 3)
	c, err := openReadConn(s.Path(), "")
	if err != nil {
		t.Fatal(err)
	}
	rows, err := c.query(`SELECT height, kind, hash FROM blocks WHERE height BETWEEN ? AND ? ORDER BY height`, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	for want := uint64(1); ; want++ {
		ok, err := rows.next()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			if want != 3 {
				t.Fatalf("read up to height %d, want 1..2", want-1)
			}
			break
		}
		b, err := s.Get(t.Context(), want)
		if err != nil {
			t.Fatal(err)
		}
		if h := uint64(rows.int64(0)); h != want || string(rows.bytes(1)) != string(b.Kind) || !bytes.Equal(rows.bytes(2), b.Hash[:]) {
			t.Fatalf("row %d: height %d, kind %q, hash %x; want %s, %s", want, h, rows.bytes(1), rows.bytes(2), b.Kind, b.Hash)
		}
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.exec(`DELETE FROM blocks`); err == nil {
		t.Error("a write on the read connection succeeded")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing.db")
	if c, err := openReadConn(missing, ""); err == nil {
		c.Close()
		t.Fatal("opened a missing database")
	} else if !strings.Contains(err.Error(), missing) {
		t.Errorf("error %q does not name %s", err, missing)
	}
	if _, err := os.Stat(missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("opening a missing database created it: %v", err)
	}
}
