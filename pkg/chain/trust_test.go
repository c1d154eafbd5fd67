package chain

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// keypair is a test signing key and its verifier.
type keypair struct {
	signer   note.Signer
	verifier note.Verifier
	vkey     string
}

func newKeypair(t *testing.T, name string) keypair {
	t.Helper()
	skey, vkey, err := GenerateKey(name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return keypair{signer: s, verifier: v, vkey: vkey}
}

// more appends n snapshot.created blocks a second apart after the head.
func more(t *testing.T, s *Store, n int) []Block {
	t.Helper()
	head, err := s.Head(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	evs := make([]Event, n)
	for i := range evs {
		at := head.Time.Add(time.Duration(i+1) * time.Second)
		evs[i] = snapEvent(KindSnapshotCreated, at, at.Format("20060102T150405.000Z"))
	}
	bs, err := s.Append(t.Context(), evs...)
	if err != nil {
		t.Fatal(err)
	}
	return bs
}

// trustedChain is a chain of 61 blocks (0..60) whose first 51 (0..50) a
// checkpoint signs; the checkpoint file lives outside the database's
// directory, as the CLI keeps it.
type trustedChain struct {
	s    *Store
	key  keypair
	file string
}

const (
	signedSize = 51 // blocks the checkpoint signs
	chainSize  = 61 // blocks in the chain
)

func newTrustedChain(t *testing.T) *trustedChain {
	t.Helper()
	tc := &trustedChain{s: newStore(t), key: newKeypair(t, "ghostbridge-test"), file: filepath.Join(t.TempDir(), "trusted", "checkpoint")}
	fill(t, tc.s, signedSize-1)
	if _, err := tc.s.SignCheckpoint(t.Context(), SignOptions{Signer: tc.key.signer, File: tc.file}); err != nil {
		t.Fatal(err)
	}
	more(t, tc.s, chainSize-signedSize)
	return tc
}

func (tc *trustedChain) trust(t *testing.T) *Trust {
	t.Helper()
	msg, err := os.ReadFile(tc.file)
	if err != nil {
		t.Fatal(err)
	}
	return &Trust{Checkpoint: msg, Verifier: tc.key.verifier}
}

// verify runs Verify and checks that a failure is reported consistently:
// in the result, and as a *MismatchError wrapping ErrMismatch.
func verify(t *testing.T, s *Store, opts VerifyOptions) (VerifyResult, *Failure) {
	t.Helper()
	res, err := s.Verify(t.Context(), opts)
	if err == nil {
		if !res.OK || res.Failure != nil {
			t.Fatalf("Verify returned no error but %+v", res)
		}
		return res, nil
	}
	var me *MismatchError
	if !errors.Is(err, ErrMismatch) || !errors.As(err, &me) {
		t.Fatalf("Verify: %v, want a *MismatchError", err)
	}
	if res.OK || res.Failure == nil || *res.Failure != me.Failure {
		t.Fatalf("result %+v disagrees with error %v", res, err)
	}
	return res, res.Failure
}

func sha(rec []byte) Hash { return sha256.Sum256(rec) }

// rebuildTree rewrites the whole tree table from the blocks as they now
// are, with tlog, as an attacker who knows the format would.
func rebuildTree(t *testing.T, s *Store) {
	t.Helper()
	bs, err := s.Blocks(t.Context(), Query{})
	if err != nil {
		t.Fatal(err)
	}
	var stored []tlog.Hash
	r := tlog.HashReaderFunc(func(ids []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(ids))
		for i, id := range ids {
			out[i] = stored[id]
		}
		return out, nil
	})
	for i, b := range bs {
		hs, err := tlog.StoredHashes(int64(i), b.Record(), r)
		if err != nil {
			t.Fatal(err)
		}
		stored = append(stored, hs...)
	}
	if _, err := s.db.Exec(`DELETE FROM tree`); err != nil {
		t.Fatal(err)
	}
	for id, h := range stored {
		if _, err := s.db.Exec(`INSERT INTO tree (id, hash) VALUES (?, ?)`, id, h[:]); err != nil {
			t.Fatal(err)
		}
	}
}

// insertBlock moves blocks at heights >= h one up and stores a forged
// block at h that links correctly to h-1, with a correct hash.
func insertBlock(t *testing.T, s *Store, h uint64) {
	t.Helper()
	before, err := s.Get(t.Context(), h-1)
	if err != nil {
		t.Fatal(err)
	}
	forged := Block{Height: h, Time: before.Time, Kind: KindSnapshotCreated, Prev: before.Hash,
		Payload: []byte(`{"source":"root","snapshot":"/.snapshots/ghostbridge/root/forged"}`)}
	forged.Hash = sha(forged.Record())
	sqlite3(t, s.Path(),
		fmt.Sprintf(`UPDATE blocks SET height = height + 1000000 WHERE height >= %d`, h),
		`UPDATE blocks SET height = height - 999999 WHERE height >= 1000000`,
		fmt.Sprintf(`INSERT INTO blocks (height, time_ns, kind, payload, prev, hash) VALUES (%d, %d, '%s', '%s', x'%s', x'%s')`,
			h, forged.Time.UnixNano(), forged.Kind, forged.Payload, hex.EncodeToString(forged.Prev[:]), hex.EncodeToString(forged.Hash[:])))
}

func swap(a, b uint64) string {
	return fmt.Sprintf(`UPDATE blocks SET height = 1000000 WHERE height = %d; UPDATE blocks SET height = %d WHERE height = %d; UPDATE blocks SET height = %d WHERE height = 1000000`, a, a, b, b)
}

// want is what one verification mode reports: the zero value means the
// chain checks out in that mode.
type want struct {
	height uint64
	reason Reason
}

// TestTamperSuite tampers with a real chain file, behind the program's
// back, in each way the issue lists, and checks what full verification
// (with and without the trusted checkpoint) and incremental verification
// (from the checkpoint) report. The checkpoint signs heights 0..50; the
// chain holds 0..60.
func TestTamperSuite(t *testing.T) {
	ok := want{}
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, c *trustedChain)
		// full without a checkpoint, full with it, incremental from it
		plain, full, incremental want
	}{
		{"untouched", func(*testing.T, *trustedChain) {}, ok, ok, ok},
		{"payload altered after the checkpoint", func(t *testing.T, c *trustedChain) {
			sqlite3(t, c.s.Path(), `UPDATE blocks SET payload = replace(payload, '"generation":7', '"generation":8') WHERE height = 55`)
		}, want{55, ReasonHashMismatch}, want{55, ReasonHashMismatch}, want{55, ReasonHashMismatch}},
		// Incremental verification trusts the tree for the blocks the
		// checkpoint covers: a payload edited under it is found by full
		// verification and by proofs (TestProveRefusesAlteredBlocks).
		{"payload altered before the checkpoint", func(t *testing.T, c *trustedChain) {
			sqlite3(t, c.s.Path(), `UPDATE blocks SET payload = replace(payload, '"generation":7', '"generation":8') WHERE height = 17`)
		}, want{17, ReasonHashMismatch}, want{17, ReasonHashMismatch}, ok},
		// The attack a plain hash chain misses: every hash and link after
		// the edit recomputed. The tree still holds the old leaves.
		{"block altered and every later hash recomputed", func(t *testing.T, c *trustedChain) {
			sqlite3(t, c.s.Path(), `UPDATE blocks SET payload = replace(payload, '"generation":7', '"generation":8') WHERE height = 17`)
			rehash(t, c.s, 17)
		}, want{17, ReasonTreeMismatch}, want{17, ReasonTreeMismatch}, want{50, ReasonTreeMismatch}},
		// The same, with the tree rebuilt too: chain and tree agree, only
		// the checkpoint kept outside the database can tell.
		{"block altered, chain rehashed and tree rebuilt", func(t *testing.T, c *trustedChain) {
			sqlite3(t, c.s.Path(), `UPDATE blocks SET payload = replace(payload, '"generation":7', '"generation":8') WHERE height = 17`)
			rehash(t, c.s, 17)
			rebuildTree(t, c.s)
		}, ok, want{50, ReasonCheckpointMismatch}, want{50, ReasonCheckpointMismatch}},
		{"block deleted", func(t *testing.T, c *trustedChain) {
			sqlite3(t, c.s.Path(), `DELETE FROM blocks WHERE height = 23`)
		}, want{23, ReasonMissingHeight}, want{23, ReasonMissingHeight}, ok},
		{"block deleted after the checkpoint", func(t *testing.T, c *trustedChain) {
			sqlite3(t, c.s.Path(), `DELETE FROM blocks WHERE height = 55`)
		}, want{55, ReasonMissingHeight}, want{55, ReasonMissingHeight}, want{55, ReasonMissingHeight}},
		{"block inserted", func(t *testing.T, c *trustedChain) {
			insertBlock(t, c.s, 25)
		}, want{25, ReasonTreeMismatch}, want{25, ReasonTreeMismatch}, want{50, ReasonReordered}},
		{"block inserted after the checkpoint", func(t *testing.T, c *trustedChain) {
			insertBlock(t, c.s, 55)
		}, want{55, ReasonTreeMismatch}, want{55, ReasonTreeMismatch}, want{55, ReasonTreeMismatch}},
		{"blocks reordered", func(t *testing.T, c *trustedChain) {
			sqlite3(t, c.s.Path(), swap(30, 31))
		}, want{30, ReasonReordered}, want{30, ReasonReordered}, ok},
		{"blocks reordered after the checkpoint", func(t *testing.T, c *trustedChain) {
			sqlite3(t, c.s.Path(), swap(55, 57))
		}, want{55, ReasonReordered}, want{55, ReasonReordered}, want{55, ReasonReordered}},
		{"chain truncated", func(t *testing.T, c *trustedChain) {
			sqlite3(t, c.s.Path(), `DELETE FROM blocks WHERE height > 40`)
		}, want{41, ReasonTruncated}, want{41, ReasonTruncated}, want{41, ReasonTruncated}},
		// Cut with its tree, a chain looks like a shorter one: only the
		// checkpoint knows it was longer.
		{"chain and tree truncated", func(t *testing.T, c *trustedChain) {
			sqlite3(t, c.s.Path(), `DELETE FROM blocks WHERE height > 40`,
				fmt.Sprintf(`DELETE FROM tree WHERE id >= %d`, tlog.StoredHashCount(41)))
		}, ok, want{41, ReasonRolledBack}, want{41, ReasonRolledBack}},
		{"chain truncated after the checkpoint", func(t *testing.T, c *trustedChain) {
			sqlite3(t, c.s.Path(), `DELETE FROM blocks WHERE height > 55`)
		}, want{56, ReasonTruncated}, want{56, ReasonTruncated}, want{56, ReasonTruncated}},
		{"tree hash deleted", func(t *testing.T, c *trustedChain) {
			sqlite3(t, c.s.Path(), fmt.Sprintf(`DELETE FROM tree WHERE id = %d`, tlog.StoredHashIndex(0, 33)))
		}, want{33, ReasonTreeMismatch}, want{33, ReasonTreeMismatch}, ok},
		{"tree node altered", func(t *testing.T, c *trustedChain) {
			sqlite3(t, c.s.Path(), fmt.Sprintf(`UPDATE tree SET hash = zeroblob(32) WHERE id = %d`, tlog.StoredHashIndex(2, 3)))
		}, want{15, ReasonTreeMismatch}, want{15, ReasonTreeMismatch}, ok},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newTrustedChain(t)
			tc.tamper(t, c)
			for _, m := range []struct {
				mode string
				opts VerifyOptions
				want want
			}{
				{"full without checkpoint", VerifyOptions{}, tc.plain},
				{"full", VerifyOptions{Trust: c.trust(t)}, tc.full},
				{"incremental", VerifyOptions{Trust: c.trust(t), Incremental: true}, tc.incremental},
			} {
				_, f := verify(t, c.s, m.opts)
				switch {
				case m.want == ok && f != nil:
					t.Errorf("%s: %s at %d (%s), want it to check out", m.mode, f.Reason, f.Height, f.Detail)
				case m.want != ok && f == nil:
					t.Errorf("%s: checks out, want %s at %d", m.mode, m.want.reason, m.want.height)
				case m.want != ok && (f.Height != m.want.height || f.Reason != m.want.reason):
					t.Errorf("%s: %s at %d (%s), want %s at %d", m.mode, f.Reason, f.Height, f.Detail, m.want.reason, m.want.height)
				}
			}
		})
	}
}

// TestTamperSuiteAcrossSegments runs the block-level tampering on a chain
// split into several 8-block segments, so the subtree-root fast path
// finds the fault and the per-hash recheck names the block.
func TestTamperSuiteAcrossSegments(t *testing.T) {
	old := segmentSize
	segmentSize = 8
	t.Cleanup(func() { segmentSize = old })
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, s *Store)
		want   want
	}{
		{"rehashed", func(t *testing.T, s *Store) {
			sqlite3(t, s.Path(), `UPDATE blocks SET payload = replace(payload, '"generation":7', '"generation":8') WHERE height = 19`)
			rehash(t, s, 19)
		}, want{19, ReasonTreeMismatch}},
		{"inserted", func(t *testing.T, s *Store) { insertBlock(t, s, 40) }, want{40, ReasonTreeMismatch}},
		{"leaf altered in the last, partial subtree", func(t *testing.T, s *Store) {
			sqlite3(t, s.Path(), fmt.Sprintf(`UPDATE tree SET hash = zeroblob(32) WHERE id = %d`, tlog.StoredHashIndex(0, 66)))
		}, want{66, ReasonTreeMismatch}},
		// Hashes inside a whole subtree, below its root: a proof through
		// them would fail, so verification must too.
		{"leaf altered in a whole subtree", func(t *testing.T, s *Store) {
			sqlite3(t, s.Path(), fmt.Sprintf(`UPDATE tree SET hash = zeroblob(32) WHERE id = %d`, tlog.StoredHashIndex(0, 12)))
		}, want{12, ReasonTreeMismatch}},
		{"node altered inside a whole subtree", func(t *testing.T, s *Store) {
			sqlite3(t, s.Path(), fmt.Sprintf(`UPDATE tree SET hash = zeroblob(32) WHERE id = %d`, tlog.StoredHashIndex(1, 10)))
		}, want{21, ReasonTreeMismatch}},
		{"node deleted inside a whole subtree", func(t *testing.T, s *Store) {
			sqlite3(t, s.Path(), fmt.Sprintf(`DELETE FROM tree WHERE id = %d`, tlog.StoredHashIndex(2, 9)))
		}, want{39, ReasonTreeMismatch}},
		// The fast path compares the stored hashes by position in the
		// subtree's range of indexes, not by id: rows moved to other
		// indexes must still show.
		{"hashes moved one index down inside a whole subtree", func(t *testing.T, s *Store) {
			at, root := tlog.StoredHashIndex(0, 12), tlog.StoredHashIndex(3, 1)
			sqlite3(t, s.Path(), fmt.Sprintf(`DELETE FROM tree WHERE id = %d; UPDATE tree SET id = id - 1 WHERE id > %d AND id <= %d`, at, at, root))
		}, want{12, ReasonTreeMismatch}},
		{"subtree root altered", func(t *testing.T, s *Store) {
			sqlite3(t, s.Path(), fmt.Sprintf(`UPDATE tree SET hash = zeroblob(32) WHERE id = %d`, tlog.StoredHashIndex(3, 2)))
		}, want{23, ReasonTreeMismatch}},
		{"upper node altered", func(t *testing.T, s *Store) {
			sqlite3(t, s.Path(), fmt.Sprintf(`UPDATE tree SET hash = zeroblob(32) WHERE id = %d`, tlog.StoredHashIndex(5, 0)))
		}, want{31, ReasonTreeMismatch}},
		{"upper node deleted", func(t *testing.T, s *Store) {
			sqlite3(t, s.Path(), fmt.Sprintf(`DELETE FROM tree WHERE id = %d`, tlog.StoredHashIndex(4, 1)))
		}, want{31, ReasonTreeMismatch}},
		{"reordered", func(t *testing.T, s *Store) { sqlite3(t, s.Path(), swap(47, 48)) }, want{47, ReasonReordered}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			fill(t, s, 69)
			for _, w := range []int{1, 3} {
				if _, f := verify(t, s, VerifyOptions{Workers: w}); f != nil {
					t.Fatalf("untouched chain: %+v", f)
				}
			}
			tc.tamper(t, s)
			for _, w := range []int{1, 3} {
				_, f := verify(t, s, VerifyOptions{Workers: w})
				if f == nil || f.Height != tc.want.height || f.Reason != tc.want.reason {
					t.Errorf("workers=%d: %+v, want %s at %d", w, f, tc.want.reason, tc.want.height)
				}
			}
		})
	}
}

// TestCheckpointFileTampering feeds verification checkpoint files that
// are not the trusted one.
func TestCheckpointFileTampering(t *testing.T) {
	c := newTrustedChain(t)
	good := c.trust(t).Checkpoint
	other := newKeypair(t, "intruder")
	sameName := newKeypair(t, "ghostbridge-test")
	origin, err := c.s.Origin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	th, err := c.s.TreeHead(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	sign := func(k keypair, origin string, size uint64, root Hash) []byte {
		msg, err := note.Sign(&note.Note{Text: string(FormatCheckpoint(origin, size, root))}, k.signer)
		if err != nil {
			t.Fatal(err)
		}
		return msg
	}
	for _, tc := range []struct {
		name   string
		msg    []byte
		reason Reason
	}{
		{"signed by another key", sign(other, origin, th.Size, th.Root), ReasonCheckpointKey},
		{"signed by another key of the same name", sign(sameName, origin, th.Size, th.Root), ReasonCheckpointKey},
		{"size bumped", []byte(strings.Replace(string(good), fmt.Sprintf("\n%d\n", signedSize), fmt.Sprintf("\n%d\n", chainSize), 1)), ReasonCheckpointSignature},
		{"root changed", []byte(strings.Replace(string(good), base64Of(t, good), base64Of(t, sign(c.key, origin, th.Size, th.Root)), 1)), ReasonCheckpointSignature},
		{"another chain's origin", sign(c.key, "ghostbridge/another-chain", th.Size, th.Root), ReasonCheckpointOrigin},
		{"not a note", []byte("hello\n"), ReasonCheckpointMalformed},
		{"empty", nil, ReasonCheckpointMalformed},
		{"signed text that is no checkpoint", func() []byte {
			msg, err := note.Sign(&note.Note{Text: "just words\n"}, c.key.signer)
			if err != nil {
				t.Fatal(err)
			}
			return msg
		}(), ReasonCheckpointMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if string(tc.msg) == string(good) {
				t.Fatal("the tampered checkpoint is the good one")
			}
			for _, incremental := range []bool{false, true} {
				res, f := verify(t, c.s, VerifyOptions{Trust: &Trust{Checkpoint: tc.msg, Verifier: c.key.verifier}, Incremental: incremental})
				if f == nil || f.Reason != tc.reason {
					t.Fatalf("incremental=%v: %+v, want %s", incremental, f, tc.reason)
				}
				if res.Checked != 0 || res.Checkpoint != nil {
					t.Errorf("incremental=%v: a refused checkpoint still gave %+v", incremental, res)
				}
				_, err := c.s.Verify(t.Context(), VerifyOptions{Trust: &Trust{Checkpoint: tc.msg, Verifier: c.key.verifier}})
				if want := "chain mismatch: " + string(tc.reason) + ": "; !strings.HasPrefix(err.Error(), want) {
					t.Errorf("error %q, want it to start %q", err, want)
				}
			}
		})
	}
}

// base64Of returns the root-hash line of a checkpoint note.
func base64Of(t *testing.T, msg []byte) string {
	t.Helper()
	lines := strings.Split(string(msg), "\n")
	if len(lines) < 3 {
		t.Fatalf("checkpoint %q", msg)
	}
	return lines[2]
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if errors.Is(err, os.ErrNotExist) {
		_ = os.Remove(to)
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// copyDatabase copies the database and its WAL files, as someone saving
// (or restoring) a copy of the chain would.
func copyDatabase(t *testing.T, from, to string) {
	t.Helper()
	for _, suffix := range []string{"", "-wal", "-shm"} {
		copyFile(t, from+suffix, to+suffix)
	}
}

// TestDatabaseReplacedByOlderCopy saves the database, lets the chain grow
// and sign a newer checkpoint, then puts the old copy back.
func TestDatabaseReplacedByOlderCopy(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	db, saved := filepath.Join(dir, "chain.db"), filepath.Join(t.TempDir(), "saved.db")
	cpFile := filepath.Join(t.TempDir(), "checkpoint")
	key := newKeypair(t, "host")
	s, err := Open(ctx, db, Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	fill(t, s, 50)
	if _, err := s.SignCheckpoint(ctx, SignOptions{Signer: key.signer, File: cpFile}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	copyDatabase(t, db, saved) // 51 blocks, checkpoint 51
	if s, err = Open(ctx, db, Options{}); err != nil {
		t.Fatal(err)
	}
	more(t, s, 10)
	if _, err := s.SignCheckpoint(ctx, SignOptions{Signer: key.signer, File: cpFile}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	copyDatabase(t, saved, db)
	if s, err = Open(ctx, db, Options{}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	trusted, err := os.ReadFile(cpFile)
	if err != nil {
		t.Fatal(err)
	}
	trust := &Trust{Checkpoint: trusted, Verifier: key.verifier}

	// The old copy is a sound chain on its own ...
	if _, f := verify(t, s, VerifyOptions{}); f != nil {
		t.Fatalf("the old copy alone: %+v", f)
	}
	// ... but behind the checkpoint kept outside it.
	for _, incremental := range []bool{false, true} {
		if _, f := verify(t, s, VerifyOptions{Trust: trust, Incremental: incremental}); f == nil || f.Reason != ReasonRolledBack || f.Height != 51 {
			t.Errorf("incremental=%v: %+v, want rolled_back at 51", incremental, f)
		}
	}
	// Signing on the old copy must not overwrite the evidence.
	_, err = s.SignCheckpoint(ctx, SignOptions{Signer: key.signer, File: cpFile})
	var me *MismatchError
	if !errors.As(err, &me) || me.Failure.Reason != ReasonRolledBack {
		t.Fatalf("SignCheckpoint on the old copy: %v, want rolled_back", err)
	}
	if now, _ := os.ReadFile(cpFile); string(now) != string(trusted) {
		t.Fatal("the checkpoint file was overwritten")
	}
	// Grown past the checkpoint, the copy holds other blocks where the
	// checkpoint signed the originals.
	if _, err := s.Append(ctx, Event{Kind: KindTicksMissed, Payload: TicksMissedPayload{Count: 1}}); err != nil {
		t.Fatal(err)
	}
	more(t, s, 19)
	for _, incremental := range []bool{false, true} {
		if _, f := verify(t, s, VerifyOptions{Trust: trust, Incremental: incremental}); f == nil || f.Reason != ReasonCheckpointMismatch || f.Height != 60 {
			t.Errorf("grown copy, incremental=%v: %+v, want checkpoint_mismatch at 60", incremental, f)
		}
	}
	if _, err := s.SignCheckpoint(ctx, SignOptions{Signer: key.signer, File: cpFile}); !errors.As(err, &me) || me.Failure.Reason != ReasonCheckpointMismatch {
		t.Fatalf("SignCheckpoint on the grown copy: %v, want checkpoint_mismatch", err)
	}
}

func TestIncrementalVerifyChecksOnlyNewBlocks(t *testing.T) {
	c := newTrustedChain(t)
	var last [2]uint64
	res, f := verify(t, c.s, VerifyOptions{Trust: c.trust(t), Incremental: true, Progress: func(done, total uint64) { last = [2]uint64{done, total} }})
	if f != nil {
		t.Fatal(f)
	}
	head, _ := c.s.Head(t.Context())
	th, _ := c.s.TreeHead(t.Context())
	if res.Mode != ModeIncremental || res.From != signedSize-1 || res.To != chainSize-1 || res.Checked != chainSize-signedSize+1 || res.HeadHash != head.Hash {
		t.Errorf("result %+v, want heights %d..%d checked", res, signedSize-1, chainSize-1)
	}
	if res.Tree == nil || *res.Tree != th || res.Checkpoint == nil || res.Checkpoint.Size != signedSize || res.Checkpoint.Note != "" {
		t.Errorf("result tree %+v checkpoint %+v, want tree %+v and checkpoint of %d", res.Tree, res.Checkpoint, th, signedSize)
	}
	if last != [2]uint64{11, 11} {
		t.Errorf("last progress %v, want [11 11]", last)
	}
	// A checkpoint of the current head: only the head block is re-hashed.
	if _, err := c.s.SignCheckpoint(t.Context(), SignOptions{Signer: c.key.signer, File: c.file}); err != nil {
		t.Fatal(err)
	}
	if res, f := verify(t, c.s, VerifyOptions{Trust: c.trust(t), Incremental: true}); f != nil || res.Checked != 1 {
		t.Errorf("at the head: %+v %+v", res, f)
	}
	if _, err := c.s.Verify(t.Context(), VerifyOptions{Incremental: true}); !errors.Is(err, ErrNoCheckpoint) {
		t.Errorf("incremental without a checkpoint: %v, want ErrNoCheckpoint", err)
	}
	if _, err := c.s.Verify(t.Context(), VerifyOptions{Trust: c.trust(t), Incremental: true, From: 3}); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("incremental with From: %v, want ErrOutOfRange", err)
	}
}

// TestConcurrentWritersKeepOneTree appends from two stores on one file at
// once, as two processes would: SQLite's write lock serialises them and
// the tree stays exactly the blocks'.
func TestConcurrentWritersKeepOneTree(t *testing.T) {
	a := newStore(t)
	b, err := Open(t.Context(), a.Path(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	done := make(chan error, 2)
	for i, s := range []*Store{a, b} {
		go func() {
			for j := range 40 {
				at := t0.Add(time.Duration(j) * time.Second)
				if _, err := s.Append(t.Context(), snapEvent(KindSnapshotCreated, at, fmt.Sprintf("w%d-%d", i, j))); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	res, f := verify(t, a, VerifyOptions{})
	if f != nil || res.Checked != 81 {
		t.Fatalf("%+v %+v", res, f)
	}
	th, err := b.TreeHead(t.Context())
	if err != nil || th.Size != 81 || th.Root != referenceRoot(t, a) {
		t.Fatalf("tree head %+v, %v; want 81 blocks under the reference root", th, err)
	}
}

// decomposition returns the stored-hash indexes of the complete subtrees
// the tree of size n is made of: what its root is computed from.
func decomposition(n uint64) []int64 {
	var ids []int64
	for level := 63; level >= 0; level-- {
		if n&(1<<level) != 0 {
			ids = append(ids, tlog.StoredHashIndex(level, int64(n>>level)-1))
		}
	}
	return ids
}

// TestTrustedFullAcrossSegments runs full verification with a trusted
// checkpoint on a chain split into 8-block segments, with the checkpoint
// inside the first segment, at a segment boundary and inside a later one.
// With a checkpoint, blocks it covers are not hashed one by one unless
// something fails; these cases check the failures are still found and
// named as without a checkpoint.
func TestTrustedFullAcrossSegments(t *testing.T) {
	old := segmentSize
	segmentSize = 8
	t.Cleanup(func() { segmentSize = old })
	const n = 70
	alter := func(h uint64) func(t *testing.T, s *Store, c uint64) {
		return func(t *testing.T, s *Store, _ uint64) {
			sqlite3(t, s.Path(), fmt.Sprintf(`UPDATE blocks SET payload = replace(payload, '"generation":7', '"generation":8') WHERE height = %d`, h))
		}
	}
	for _, size := range []uint64{5, 48, 51} {
		for _, tc := range []struct {
			name   string
			tamper func(t *testing.T, s *Store, c uint64)
			want   func(c uint64) want
		}{
			{"untouched", func(*testing.T, *Store, uint64) {}, func(uint64) want { return want{} }},
			{"payload altered", alter(2), func(uint64) want { return want{2, ReasonHashMismatch} }},
			{"payload altered in a later segment", alter(20), func(uint64) want { return want{20, ReasonHashMismatch} }},
			// The stored hash is left, the tree rebuilt over the new record:
			// only hashing the record finds it, after the root check fails.
			{"payload altered and tree rebuilt", func(t *testing.T, s *Store, c uint64) {
				alter(2)(t, s, c)
				rebuildTree(t, s)
			}, func(uint64) want { return want{2, ReasonHashMismatch} }},
			{"hash altered", func(t *testing.T, s *Store, _ uint64) {
				sqlite3(t, s.Path(), `UPDATE blocks SET hash = zeroblob(32) WHERE height = 20`)
			}, func(uint64) want { return want{20, ReasonHashMismatch} }},
			{"hash altered at a segment's end", func(t *testing.T, s *Store, _ uint64) {
				sqlite3(t, s.Path(), `UPDATE blocks SET hash = zeroblob(32) WHERE height = 23`)
			}, func(uint64) want { return want{23, ReasonHashMismatch} }},
			// Chain and tree rewritten, except the few stored nodes the
			// checkpoint's root is computed from: they must be compared
			// with the blocks too.
			{"rewritten but the checkpoint's nodes kept", func(t *testing.T, s *Store, c uint64) {
				kept := map[int64][]byte{}
				for _, id := range decomposition(c) {
					var h []byte
					if err := s.db.QueryRow(`SELECT hash FROM tree WHERE id = ?`, id).Scan(&h); err != nil {
						t.Fatal(err)
					}
					kept[id] = h
				}
				alter(2)(t, s, c)
				rehash(t, s, 2)
				rebuildTree(t, s)
				for id, h := range kept {
					if _, err := s.db.Exec(`UPDATE tree SET hash = ? WHERE id = ?`, h, id); err != nil {
						t.Fatal(err)
					}
				}
			}, func(c uint64) want {
				return map[uint64]want{5: {3, ReasonTreeMismatch}, 48: {47, ReasonTreeMismatch}, 51: {49, ReasonTreeMismatch}}[c]
			}},
		} {
			t.Run(fmt.Sprintf("checkpoint %d/%s", size, tc.name), func(t *testing.T) {
				s := newStore(t)
				key := newKeypair(t, "k")
				fill(t, s, int(size)-1)
				c, err := s.SignCheckpoint(t.Context(), SignOptions{Signer: key.signer})
				if err != nil {
					t.Fatal(err)
				}
				more(t, s, n-int(size))
				tc.tamper(t, s, size)
				w := tc.want(size)
				for _, workers := range []int{1, 3} {
					_, f := verify(t, s, VerifyOptions{Workers: workers, Trust: &Trust{Checkpoint: []byte(c.Note), Verifier: key.verifier}})
					switch {
					case w == want{} && f != nil:
						t.Errorf("workers=%d: %+v, want it to check out", workers, f)
					case w != want{} && (f == nil || f.Height != w.height || f.Reason != w.reason):
						t.Errorf("workers=%d: %+v, want %s at %d", workers, f, w.reason, w.height)
					}
				}
			})
		}
	}
}

// storedHash reads one stored tree hash.
func storedHash(t *testing.T, s *Store, id int64) []byte {
	t.Helper()
	var h []byte
	if err := s.db.QueryRow(`SELECT hash FROM tree WHERE id = ?`, id).Scan(&h); err != nil {
		t.Fatal(err)
	}
	return h
}

func setStoredHash(t *testing.T, s *Store, id int64, h []byte) {
	t.Helper()
	if _, err := s.db.Exec(`UPDATE tree SET hash = ? WHERE id = ?`, h, id); err != nil {
		t.Fatal(err)
	}
}

// TestSignCheckpointRefusesRewrittenHistory is the attack on signing: a
// checkpoint at 60 in the file; the chain grows to 120; block 5 is
// altered, the chain rehashed and the tree rebuilt, except the four
// stored nodes the root at 60 is computed from, which are put back. The
// tree then still has the file's root at its size, but the blocks after
// the checkpoint no longer give the stored nodes: signing must refuse,
// leave the file alone, and verification from it must fail once the
// rebuilt nodes are restored.
func TestSignCheckpointRefusesRewrittenHistory(t *testing.T) {
	for _, seg := range []uint64{8, segmentSize} {
		t.Run(fmt.Sprintf("segment=%d", seg), func(t *testing.T) {
			old := segmentSize
			segmentSize = seg
			t.Cleanup(func() { segmentSize = old })
			ctx := t.Context()
			s, key := newStore(t), newKeypair(t, "host")
			file := filepath.Join(t.TempDir(), "checkpoint")
			fill(t, s, 59)
			if _, err := s.SignCheckpoint(ctx, SignOptions{Signer: key.signer, File: file}); err != nil {
				t.Fatal(err)
			}
			more(t, s, 60)
			trusted, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			kept := map[int64][]byte{}
			for _, id := range decomposition(60) { // (5,0) (4,2) (3,6) (2,14)
				kept[id] = storedHash(t, s, id)
			}
			sqlite3(t, s.Path(), `UPDATE blocks SET payload = replace(payload, '"generation":7', '"generation":8') WHERE height = 5`)
			rehash(t, s, 5)
			rebuildTree(t, s)
			rebuilt := map[int64][]byte{}
			for id, h := range kept {
				rebuilt[id] = storedHash(t, s, id)
				setStoredHash(t, s, id, h)
			}
			signed, err := ParseCheckpoint(noteText(trusted))
			if err != nil {
				t.Fatal(err)
			}
			if root, err := tlog.TreeHash(60, treeReader{ctx: ctx, stmt: s.readTree}); err != nil || Hash(root) != signed.Root {
				t.Fatalf("set-up: the doctored tree should have the signed root at 60 (%v)", err)
			}
			var me *MismatchError
			c, err := s.SignCheckpoint(ctx, SignOptions{Signer: key.signer, File: file})
			if !errors.As(err, &me) {
				t.Fatalf("SignCheckpoint over a rewritten history = %+v, %v; want a mismatch", c, err)
			}
			if me.Failure.Reason != ReasonTreeMismatch || me.Failure.Height != 59 {
				t.Errorf("refusal %+v, want tree_mismatch at 59", me.Failure)
			}
			if now, _ := os.ReadFile(file); string(now) != string(trusted) {
				t.Fatal("the checkpoint file was overwritten")
			}
			if _, err := s.LatestTrustedCheckpoint(ctx, key.verifier, ""); err != nil {
				t.Fatal(err)
			}
			if latest, _ := s.LatestCheckpoint(ctx); latest.Size != 60 {
				t.Fatalf("a checkpoint of %d was stored", latest.Size)
			}
			for id, h := range rebuilt {
				setStoredHash(t, s, id, h)
			}
			trust := &Trust{Checkpoint: trusted, Verifier: key.verifier}
			for _, incremental := range []bool{false, true} {
				if _, f := verify(t, s, VerifyOptions{Trust: trust, Incremental: incremental}); f == nil {
					t.Errorf("incremental=%v: the rewritten chain checks out against the file", incremental)
				}
			}
			if _, err := s.Prove(ctx, 5); err == nil {
				t.Error("Prove(5) vouched for the forged block")
			}
		})
	}
}

// TestIncrementalVerifyChecksUpperNodes forges the stored nodes above
// whole segments after the checkpoint, consistently among themselves, so
// the tree head (and a consistency proof to the checkpoint) commits to
// blocks that are not there: every segment's own subtree root is still
// the blocks', so only comparing the nodes above them finds it.
func TestIncrementalVerifyChecksUpperNodes(t *testing.T) {
	old := segmentSize
	segmentSize = 8
	t.Cleanup(func() { segmentSize = old })
	ctx := t.Context()
	s, key := newStore(t), newKeypair(t, "host")
	file := filepath.Join(t.TempDir(), "checkpoint")
	fill(t, s, 9)
	if _, err := s.SignCheckpoint(ctx, SignOptions{Signer: key.signer, File: file}); err != nil {
		t.Fatal(err)
	}
	more(t, s, 30) // 40 blocks: segments 16..23 and 24..31 are whole and new
	trusted, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	trust := &Trust{Checkpoint: trusted, Verifier: key.verifier}
	if _, f := verify(t, s, VerifyOptions{Trust: trust, Incremental: true}); f != nil {
		t.Fatalf("untouched: %+v", f)
	}
	forged := tlog.NodeHash(tlog.Hash(sha256.Sum256([]byte("forged left"))), tlog.Hash(sha256.Sum256([]byte("forged right"))))
	left := tlog.Hash(storedHash(t, s, tlog.StoredHashIndex(4, 0)))
	top := tlog.NodeHash(left, forged)
	setStoredHash(t, s, tlog.StoredHashIndex(4, 1), forged[:])
	setStoredHash(t, s, tlog.StoredHashIndex(5, 0), top[:])

	res, f := verify(t, s, VerifyOptions{Trust: trust, Incremental: true})
	if f == nil || f.Reason != ReasonTreeMismatch || f.Height != 31 {
		t.Fatalf("incremental: %+v (tree %+v), want tree_mismatch at 31", f, res.Tree)
	}
	if _, f := verify(t, s, VerifyOptions{Trust: trust}); f == nil || f.Reason != ReasonTreeMismatch || f.Height != 31 {
		t.Errorf("full: %+v, want tree_mismatch at 31", f)
	}
	var me *MismatchError
	if _, err := s.SignCheckpoint(ctx, SignOptions{Signer: key.signer, File: file}); !errors.As(err, &me) {
		t.Fatalf("SignCheckpoint over forged upper nodes: %v, want a mismatch", err)
	}
}

// TestVerifyBesideAppends verifies while another Store appends to the same
// file, as chain verify runs beside snap run: blocks appended after
// verification read the head are a longer chain, not a truncated one. The
// Progress callback appends too, so every run has a block appended
// between reading the head and checking the tree's end.
func TestVerifyBesideAppends(t *testing.T) {
	ctx := t.Context()
	s, key := newStore(t), newKeypair(t, "host")
	fill(t, s, 30)
	file := filepath.Join(t.TempDir(), "checkpoint")
	if _, err := s.SignCheckpoint(ctx, SignOptions{Signer: key.signer, File: file}); err != nil {
		t.Fatal(err)
	}
	trusted, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	w, err := Open(ctx, s.Path(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var n atomic.Int64
	appendOne := func() error {
		i := n.Add(1)
		at := t0.Add(time.Hour + time.Duration(i)*time.Second)
		_, err := w.Append(ctx, snapEvent(KindSnapshotCreated, at, fmt.Sprintf("beside-%d", i)))
		return err
	}
	stop, done := make(chan struct{}), make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			if err := appendOne(); err != nil {
				done <- err
				return
			}
		}
	}()
	for i := range 10 {
		opts := VerifyOptions{Progress: func(done, total uint64) {
			if done == total {
				if err := appendOne(); err != nil {
					t.Error(err)
				}
			}
		}}
		if i >= 5 {
			opts.Trust, opts.Incremental = &Trust{Checkpoint: trusted, Verifier: key.verifier}, true
		}
		if _, f := verify(t, s, opts); f != nil {
			t.Errorf("run %d (incremental %v): %s at %d: %s", i, opts.Incremental, f.Reason, f.Height, f.Detail)
		}
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, f := verify(t, s, VerifyOptions{}); f != nil {
		t.Fatalf("after the appends: %+v", f)
	}
}
