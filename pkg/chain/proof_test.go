package chain

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// provenChain is a chain of 100 blocks and a checkpoint over them.
func provenChain(t *testing.T) (*Store, keypair, Checkpoint) {
	t.Helper()
	s := newStore(t)
	fill(t, s, 99)
	key := newKeypair(t, "host")
	c, err := s.SignCheckpoint(t.Context(), SignOptions{Signer: key.signer})
	if err != nil {
		t.Fatal(err)
	}
	return s, key, c
}

func TestProveAndVerifyBundle(t *testing.T) {
	s, key, c := provenChain(t)
	if want := referenceRoot(t, s); c.Root != want {
		t.Fatalf("checkpoint root %s, RFC 6962 over the records gives %s", c.Root, want)
	}
	for _, h := range []uint64{0, 1, 31, 64, 98, 99} {
		b, err := s.Prove(t.Context(), h)
		if err != nil {
			t.Fatalf("Prove(%d): %v", h, err)
		}
		blk, _ := s.Get(t.Context(), h)
		if b.Block.Height != h || b.Block.Hash != blk.Hash || !bytes.Equal(b.Checkpoint, []byte(c.Note)) {
			t.Fatalf("bundle for %d holds block %+v and checkpoint %q", h, b.Block, b.Checkpoint)
		}
		data := b.Bytes()

		// The proof checks with tlog alone, from the bundle's parts.
		parsed, err := ParseBundle(data)
		if err != nil {
			t.Fatal(err)
		}
		n, err := note.Open(parsed.Checkpoint, note.VerifierList(key.verifier))
		if err != nil {
			t.Fatal(err)
		}
		tree, err := ParseCheckpoint([]byte(n.Text))
		if err != nil {
			t.Fatal(err)
		}
		proof := make(tlog.RecordProof, len(parsed.Proof))
		for i, p := range parsed.Proof {
			proof[i] = tlog.Hash(p)
		}
		if err := tlog.CheckRecord(proof, int64(tree.Size), tlog.Hash(tree.Root), int64(h), tlog.RecordHash(parsed.Block.Record())); err != nil {
			t.Fatalf("tlog.CheckRecord on the bundle for %d: %v", h, err)
		}

		res, err := VerifyBundle(data, key.verifier, c.Origin)
		if err != nil || !res.OK || res.Block.Hash != blk.Hash || res.Checkpoint.Size != 100 || res.Checkpoint.Root != c.Root {
			t.Fatalf("VerifyBundle(%d) = %+v, %v", h, res, err)
		}
	}
	// Beyond the head there is no block to prove; past the checkpoint,
	// no checkpoint to prove it against yet.
	if _, err := s.Prove(t.Context(), 100); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("Prove beyond the head: %v, want ErrOutOfRange", err)
	}
	more(t, s, 3)
	if _, err := s.Prove(t.Context(), 100); !errors.Is(err, ErrNoCheckpoint) {
		t.Errorf("Prove past the checkpoint: %v, want ErrNoCheckpoint", err)
	}
	// A newer checkpoint is used once there is one.
	c2, err := s.SignCheckpoint(t.Context(), SignOptions{Signer: key.signer})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []uint64{5, 102} {
		b, err := s.Prove(t.Context(), h)
		if err != nil || string(b.Checkpoint) != c2.Note {
			t.Fatalf("Prove(%d) after a new checkpoint: %v", h, err)
		}
		if _, err := VerifyBundle(b.Bytes(), key.verifier, ""); err != nil {
			t.Fatal(err)
		}
	}
}

func TestBundleFormat(t *testing.T) {
	s, _, c := provenChain(t)
	b, err := s.Prove(t.Context(), 42)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := s.Get(t.Context(), 42)
	lines := strings.Split(string(b.Bytes()), "\n")
	if lines[0] != "ghostbridge.proof.v1" || lines[1] != string(blk.Record()) {
		t.Fatalf("bundle starts %q", lines[:2])
	}
	// A tree of 100 leaves: the path from leaf 42 has 7 hashes.
	for i := 2; i < 9; i++ {
		if len(lines[i]) != 44 || !strings.HasSuffix(lines[i], "=") {
			t.Fatalf("line %d %q is not a base64 hash", i, lines[i])
		}
	}
	if lines[9] != "" || strings.Join(lines[10:], "\n") != c.Note {
		t.Fatalf("bundle does not end with a blank line and the checkpoint:\n%s", b.Bytes())
	}
}

// TestBundleEveryByteMatters changes each byte of a bundle in turn (each
// of its bits, and a few other values), and drops or adds one: every
// variant must be refused.
func TestBundleEveryByteMatters(t *testing.T) {
	s, key, c := provenChain(t)
	b, err := s.Prove(t.Context(), 77)
	if err != nil {
		t.Fatal(err)
	}
	data := b.Bytes()
	refused := func(what string, d []byte) {
		t.Helper()
		res, err := VerifyBundle(d, key.verifier, c.Origin)
		if err == nil || res.OK || !errors.Is(err, ErrMismatch) {
			t.Fatalf("%s: accepted (%+v, %v)", what, res, err)
		}
	}
	d := make([]byte, len(data))
	for i := range data {
		for _, x := range []byte{1, 2, 4, 8, 16, 32, 64, 128, 0xff} {
			copy(d, data)
			d[i] ^= x
			refused(fmt.Sprintf("byte %d ^ %#x", i, x), d)
		}
		for _, v := range []byte{'\n', ' ', '0', 'A', '='} {
			if data[i] != v {
				copy(d, data)
				d[i] = v
				refused(fmt.Sprintf("byte %d = %q", i, v), d)
			}
		}
		refused(fmt.Sprintf("byte %d dropped", i), append(append([]byte{}, data[:i]...), data[i+1:]...))
	}
	refused("a byte appended", append(append([]byte{}, data...), '\n'))
	// The last base64 digit before "=" carries two unused bits: a digit
	// differing only in them decodes to the same bytes, so lenient
	// decoding would accept a different bundle.
	lines := strings.Split(string(data), "\n")
	for _, i := range []int{2, len(lines) - 2} { // a proof hash; the signature line
		l := lines[i]
		j := strings.LastIndexByte(l, '=') - 1
		const digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
		v := strings.IndexByte(digits, l[j])
		if j < 0 || v < 0 {
			t.Fatalf("line %d %q does not end in padded base64", i, l)
		}
		alt := append([]string{}, lines...)
		alt[i] = l[:j] + string(digits[v^1]) + l[j+1:]
		refused(fmt.Sprintf("line %d with a non-canonical last digit", i), []byte(strings.Join(alt, "\n")))
	}
	if _, err := VerifyBundle(data, key.verifier, c.Origin); err != nil {
		t.Fatalf("the untouched bundle: %v", err)
	}
}

func TestVerifyBundleRefuses(t *testing.T) {
	s, key, c := provenChain(t)
	b, err := s.Prove(t.Context(), 10)
	if err != nil {
		t.Fatal(err)
	}
	other := newKeypair(t, "host")
	otherChain, _, _ := provenChain(t)
	ob, err := otherChain.Prove(t.Context(), 10)
	if err != nil {
		t.Fatal(err)
	}
	// A block swapped in from another bundle of the same checkpoint.
	b11, err := s.Prove(t.Context(), 11)
	if err != nil {
		t.Fatal(err)
	}
	swapped := b
	swapped.Block = b11.Block
	// A proof for a height past the checkpoint's size.
	beyond := b
	beyond.Block.Height = 100
	for _, tc := range []struct {
		name   string
		data   []byte
		v      note.Verifier
		origin string
		reason Reason
	}{
		{"another key", b.Bytes(), other.verifier, "", ReasonCheckpointKey},
		{"another chain", ob.Bytes(), key.verifier, c.Origin, ReasonCheckpointKey},
		{"another origin", b.Bytes(), key.verifier, "ghostbridge/elsewhere", ReasonCheckpointOrigin},
		{"another block", swapped.Bytes(), key.verifier, "", ReasonBadProof},
		{"beyond the checkpoint", beyond.Bytes(), key.verifier, "", ReasonBadProof},
		{"empty", nil, key.verifier, "", ReasonBadBundle},
		{"a checkpoint alone", []byte(c.Note), key.verifier, "", ReasonBadBundle},
		{"no verifier", b.Bytes(), nil, "", ReasonCheckpointKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := VerifyBundle(tc.data, tc.v, tc.origin)
			var me *MismatchError
			if !errors.As(err, &me) || me.Failure.Reason != tc.reason || res.OK || res.Failure == nil || *res.Failure != me.Failure {
				t.Fatalf("VerifyBundle = %+v, %v; want %s", res, err, tc.reason)
			}
		})
	}
}

// TestProveRefusesAlteredBlocks: a bundle is only made for a block the
// checkpoint signs, so an edit under a checkpoint shows up here even
// when incremental verification does not re-read the block.
func TestProveRefusesAlteredBlocks(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, s *Store)
		reason Reason
	}{
		{"payload altered", func(t *testing.T, s *Store) {
			sqlite3(t, s.Path(), `UPDATE blocks SET payload = replace(payload, '"generation":7', '"generation":8') WHERE height = 17`)
		}, ReasonHashMismatch},
		{"altered and rehashed", func(t *testing.T, s *Store) {
			sqlite3(t, s.Path(), `UPDATE blocks SET payload = replace(payload, '"generation":7', '"generation":8') WHERE height = 17`)
			rehash(t, s, 17)
		}, ReasonTreeMismatch},
		{"altered, rehashed, tree rebuilt", func(t *testing.T, s *Store) {
			sqlite3(t, s.Path(), `UPDATE blocks SET payload = replace(payload, '"generation":7', '"generation":8') WHERE height = 17`)
			rehash(t, s, 17)
			rebuildTree(t, s)
		}, ReasonCheckpointMismatch},
		// A damaged hash low in a complete subtree is one full
		// verification does not read (it checks subtree roots); a proof
		// through it is refused.
		{"sibling leaf damaged", func(t *testing.T, s *Store) {
			sqlite3(t, s.Path(), fmt.Sprintf(`UPDATE tree SET hash = zeroblob(32) WHERE id = %d`, tlog.StoredHashIndex(0, 16)))
		}, ReasonTreeMismatch},
		{"block deleted", func(t *testing.T, s *Store) {
			sqlite3(t, s.Path(), `DELETE FROM blocks WHERE height = 17`)
		}, ReasonMissingHeight},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _, _ := provenChain(t)
			tc.tamper(t, s)
			_, err := s.Prove(t.Context(), 17)
			var me *MismatchError
			if !errors.As(err, &me) || me.Failure.Reason != tc.reason {
				t.Fatalf("Prove(17) = %v, want %s", err, tc.reason)
			}
		})
	}
}

func FuzzParseBundle(f *testing.F) {
	key := fuzzKey(f)
	s, err := Open(f.Context(), f.TempDir()+"/chain.db", Options{Create: true})
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	for i := range 12 {
		if _, err := s.Append(f.Context(), snapEvent(KindSnapshotCreated, t0, fmt.Sprint(i))); err != nil {
			f.Fatal(err)
		}
	}
	if _, err := s.SignCheckpoint(f.Context(), SignOptions{Signer: key.signer}); err != nil {
		f.Fatal(err)
	}
	for _, h := range []uint64{0, 5, 12} {
		b, err := s.Prove(f.Context(), h)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b.Bytes())
	}
	f.Add([]byte("ghostbridge.proof.v1\n\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := ParseBundle(data)
		if err == nil {
			if !bytes.Equal(b.Bytes(), data) {
				t.Fatalf("ParseBundle(%q) does not reproduce it", data)
			}
		} else if !errors.Is(err, ErrBadBundle) {
			t.Fatalf("error %v does not wrap ErrBadBundle", err)
		}
		res, err := VerifyBundle(data, key.verifier, "")
		if err == nil {
			if !res.OK || res.Block == nil || res.Checkpoint == nil || res.Block.Height >= res.Checkpoint.Size {
				t.Fatalf("accepted %q as %+v", data, res)
			}
		} else if !errors.Is(err, ErrMismatch) || res.OK {
			t.Fatalf("VerifyBundle error %v, result %+v", err, res)
		}
	})
}

// TestProveUsesTheSignedNote forges a checkpoint row's size and root
// columns (to a larger tree the stored one has): the bundle ships the
// note, so the proof must be against what the note signs.
func TestProveUsesTheSignedNote(t *testing.T) {
	ctx := t.Context()
	s, key := newStore(t), newKeypair(t, "host")
	fill(t, s, 9)
	c, err := s.SignCheckpoint(ctx, SignOptions{Signer: key.signer})
	if err != nil {
		t.Fatal(err)
	}
	more(t, s, 10)
	th, err := s.TreeHead(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.Exec(`UPDATE checkpoints SET size = ?, root = ?`, int64(th.Size), th.Root[:]); err != nil {
		t.Fatal(err)
	}
	b, err := s.Prove(ctx, 5)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := VerifyBundle(b.Bytes(), key.verifier, c.Origin); err != nil || !res.OK {
		t.Fatalf("the bundle for 5 does not verify: %+v, %v", res, err)
	}
	// The row claims height 15; the note does not cover it.
	if b, err := s.Prove(ctx, 15); !errors.Is(err, ErrBadCheckpoint) {
		t.Fatalf("Prove(15) = %v (bundle of %d bytes), want ErrBadCheckpoint", err, len(b.Bytes()))
	}
}
