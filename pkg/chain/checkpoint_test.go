package chain

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

func TestCheckpointTextIsC2SP(t *testing.T) {
	var root Hash
	for i := range root {
		root[i] = byte(i)
	}
	const want = "ghostbridge/0b8f3f9e-1c1d-4a51-9f7b-0d6a0e1c2b3a\n" +
		"1234\n" +
		"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"
	got := FormatCheckpoint("ghostbridge/0b8f3f9e-1c1d-4a51-9f7b-0d6a0e1c2b3a", 1234, root)
	if string(got) != want {
		t.Fatalf("checkpoint text\n got %q\nwant %q", got, want)
	}
	c, err := ParseCheckpoint(got)
	if err != nil || c.Origin != "ghostbridge/0b8f3f9e-1c1d-4a51-9f7b-0d6a0e1c2b3a" || c.Size != 1234 || c.Root != root {
		t.Fatalf("ParseCheckpoint = %+v, %v", c, err)
	}
	if _, err := ParseCheckpoint([]byte(want + "extension line\n")); err != nil {
		t.Errorf("a checkpoint with an extension line: %v", err)
	}
}

func TestParseCheckpointRejects(t *testing.T) {
	const root = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	for _, text := range []string{
		"",
		"origin\n5\n" + root,                           // no final newline
		"origin\n5\n",                                  // no root
		"\n5\n" + root + "\n",                          // empty origin
		"has space\n5\n" + root + "\n",                 // space in origin
		"has+plus\n5\n" + root + "\n",                  // '+' in origin
		"origin\n05\n" + root + "\n",                   // leading zero
		"origin\n-5\n" + root + "\n",                   // negative
		"origin\n+5\n" + root + "\n",                   // sign
		"origin\n 5\n" + root + "\n",                   // space
		"origin\n99999999999999999999\n" + root + "\n", // overflow
		fmt.Sprintf("origin\n%d\n%s\n", uint64(math.MaxInt64)+1, root), // beyond tlog's int64
		"origin\n5\n" + root[:43] + "\n",                               // short base64
		"origin\n5\n" + root[:42] + "9=\n",                             // non-canonical last digit
		"origin\n5\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd\n",        // 30 bytes
		"origin\n5\n" + root + "\n\n",                                  // empty extension line
	} {
		if _, err := ParseCheckpoint([]byte(text)); !errors.Is(err, ErrBadCheckpoint) {
			t.Errorf("ParseCheckpoint(%q) = %v, want ErrBadCheckpoint", text, err)
		}
	}
}

func FuzzParseCheckpoint(f *testing.F) {
	key := fuzzKey(f)
	var root Hash
	root[3] = 7
	body := FormatCheckpoint("ghostbridge/fuzz", 42, root)
	signed, err := note.Sign(&note.Note{Text: string(body)}, key.signer)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(body)
	f.Add(signed)
	f.Add(append(append([]byte{}, body...), "ext\n"...))
	f.Add([]byte("o\n0\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"))
	f.Fuzz(func(t *testing.T, text []byte) {
		c, err := ParseCheckpoint(text)
		if err != nil {
			if !errors.Is(err, ErrBadCheckpoint) {
				t.Fatalf("error %v does not wrap ErrBadCheckpoint", err)
			}
		} else if !bytes.HasPrefix(text, FormatCheckpoint(c.Origin, c.Size, c.Root)) {
			t.Fatalf("parsed %+v from %q, which it does not reproduce", c, text)
		}
		// The signed form: refused with a reason, or signed by the key.
		c, err = OpenCheckpoint(text, key.verifier, "")
		var me *MismatchError
		switch {
		case err == nil:
			if !bytes.HasPrefix(text, FormatCheckpoint(c.Origin, c.Size, c.Root)) || c.KeyName != "fuzz" {
				t.Fatalf("opened %+v from %q", c, text)
			}
		case !errors.As(err, &me) || !errors.Is(err, ErrMismatch) || !me.Failure.Reason.heightless():
			t.Fatalf("OpenCheckpoint error %v is not a checkpoint mismatch", err)
		}
	})
}

func fuzzKey(tb testing.TB) keypair {
	tb.Helper()
	skey, vkey, err := GenerateKey("fuzz")
	if err != nil {
		tb.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		tb.Fatal(err)
	}
	v, err := NewVerifier(vkey)
	if err != nil {
		tb.Fatal(err)
	}
	return keypair{signer: s, verifier: v, vkey: vkey}
}

func TestSignCheckpoint(t *testing.T) {
	s := newStore(t)
	fill(t, s, 9)
	key := newKeypair(t, "host.example")
	file := filepath.Join(t.TempDir(), "dir", "checkpoint")
	if _, err := s.LatestCheckpoint(t.Context()); !errors.Is(err, ErrNoCheckpoint) {
		t.Fatalf("LatestCheckpoint before any: %v, want ErrNoCheckpoint", err)
	}
	at := time.Date(2026, 11, 26, 7, 0, 0, 0, time.UTC)
	c, err := s.SignCheckpoint(t.Context(), SignOptions{Signer: key.signer, File: file, Now: func() time.Time { return at }})
	if err != nil {
		t.Fatal(err)
	}
	id, _ := s.ChainID(t.Context())
	th, _ := s.TreeHead(t.Context())
	if c.Origin != "ghostbridge/"+id || c.Size != 10 || c.Root != th.Root || !c.Time.Equal(at) || c.KeyName != "host.example" || len(c.KeyID) != 8 {
		t.Fatalf("checkpoint %+v, want origin ghostbridge/%s over tree %+v", c, id, th)
	}
	if !strings.HasPrefix(c.Note, string(FormatCheckpoint(c.Origin, 10, th.Root))+"\n— host.example ") {
		t.Fatalf("note %q is not the C2SP checkpoint signed by host.example", c.Note)
	}
	msg, err := os.ReadFile(file)
	if err != nil || string(msg) != c.Note {
		t.Fatalf("checkpoint file holds %q (%v), want the note", msg, err)
	}
	for _, p := range []string{file, filepath.Dir(file)} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if want := map[bool]os.FileMode{true: 0o700, false: 0o600}[st.IsDir()]; st.Mode().Perm() != want {
			t.Errorf("%s has mode %v, want %v", p, st.Mode().Perm(), want)
		}
	}
	opened, err := OpenCheckpoint(msg, key.verifier, c.Origin)
	if err != nil || opened.Size != 10 || opened.Root != th.Root {
		t.Fatalf("OpenCheckpoint = %+v, %v", opened, err)
	}
	latest, err := s.LatestCheckpoint(t.Context())
	if err != nil || latest != c {
		t.Fatalf("LatestCheckpoint = %+v, %v; want %+v", latest, err, c)
	}
	matches, _ := filepath.Glob(filepath.Join(filepath.Dir(file), ".*"))
	if len(matches) != 0 {
		t.Errorf("temporary files left behind: %v", matches)
	}

	// A custom origin, then the file follows the chain forward.
	more(t, s, 5)
	c2, err := s.SignCheckpoint(t.Context(), SignOptions{Signer: key.signer, Origin: "host.example/ghostbridge"})
	if err != nil || c2.Origin != "host.example/ghostbridge" || c2.Size != 15 {
		t.Fatalf("custom origin: %+v, %v", c2, err)
	}
	if _, err := s.WriteCheckpointFile(t.Context(), file); !errors.Is(err, ErrMismatch) {
		t.Fatalf("WriteCheckpointFile over another origin's checkpoint: %v, want a mismatch", err)
	}
	c3, err := s.SignCheckpoint(t.Context(), SignOptions{Signer: key.signer})
	if err != nil {
		t.Fatal(err)
	}
	if w, err := s.WriteCheckpointFile(t.Context(), file); err != nil || w.Note != c3.Note {
		t.Fatalf("WriteCheckpointFile = %+v, %v", w, err)
	}
	if msg, _ := os.ReadFile(file); string(msg) != c3.Note {
		t.Fatal("the file does not hold the newest checkpoint")
	}
	if _, err := s.SignCheckpoint(t.Context(), SignOptions{Signer: key.signer, Origin: "has space"}); err == nil {
		t.Error("an origin with a space was accepted")
	}
	if _, err := s.SignCheckpoint(t.Context(), SignOptions{}); err == nil {
		t.Error("signing without a key succeeded")
	}
}

func TestCheckpointFileRefusesGarbage(t *testing.T) {
	s := newStore(t)
	key := newKeypair(t, "k")
	file := filepath.Join(t.TempDir(), "checkpoint")
	if err := os.WriteFile(file, []byte("not a checkpoint\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SignCheckpoint(t.Context(), SignOptions{Signer: key.signer, File: file}); !errors.Is(err, ErrBadCheckpoint) {
		t.Fatalf("SignCheckpoint over a garbage file: %v, want ErrBadCheckpoint", err)
	}
	if _, err := s.LatestCheckpoint(t.Context()); !errors.Is(err, ErrNoCheckpoint) {
		t.Errorf("a refused checkpoint was stored: %v", err)
	}
}

func TestCheckpointPolicy(t *testing.T) {
	at := time.Date(2026, 11, 26, 7, 0, 0, 0, time.UTC)
	last := Checkpoint{Size: 100, Time: at}
	for _, tc := range []struct {
		name   string
		policy CheckpointPolicy
		now    time.Time
		size   uint64
		last   Checkpoint
		want   bool
	}{
		{"no checkpoint yet, enough blocks", CheckpointPolicy{Blocks: 60}, at, 60, Checkpoint{}, true},
		{"no checkpoint yet, too few blocks", CheckpointPolicy{Blocks: 60}, at, 59, Checkpoint{}, false},
		{"no checkpoint yet, by time", CheckpointPolicy{Interval: time.Minute}, at, 2, Checkpoint{}, true},
		{"59 blocks since", CheckpointPolicy{Blocks: 60}, at, 159, last, false},
		{"60 blocks since", CheckpointPolicy{Blocks: 60}, at, 160, last, true},
		{"interval not yet passed", CheckpointPolicy{Interval: time.Minute}, at.Add(59 * time.Second), 101, last, false},
		{"interval passed", CheckpointPolicy{Interval: time.Minute}, at.Add(time.Minute), 101, last, true},
		{"interval passed, nothing new", CheckpointPolicy{Interval: time.Minute}, at.Add(time.Hour), 100, last, false},
		{"either: blocks", CheckpointPolicy{Blocks: 60, Interval: time.Hour}, at.Add(time.Second), 160, last, true},
		{"either: time", CheckpointPolicy{Blocks: 60, Interval: time.Hour}, at.Add(time.Hour), 101, last, true},
		{"chain behind the last checkpoint", CheckpointPolicy{Blocks: 1, Interval: time.Second}, at.Add(time.Hour), 50, last, false},
		{"zero policy", CheckpointPolicy{}, at.Add(time.Hour), 1000, last, false},
	} {
		if got := tc.policy.Due(tc.now, tc.size, tc.last); got != tc.want {
			t.Errorf("%s: Due = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestCheckpointPolicyDrivesSigning runs the loop a writer such as snap
// run has: append, ask the policy, sign.
func TestCheckpointPolicyDrivesSigning(t *testing.T) {
	s := newStore(t)
	key := newKeypair(t, "k")
	file := filepath.Join(t.TempDir(), "checkpoint")
	policy := CheckpointPolicy{Blocks: DefaultCheckpointBlocks}
	var last Checkpoint
	now := t0
	signed := 0
	for range 200 {
		now = now.Add(time.Second)
		bs, err := s.Append(t.Context(), snapEvent(KindSnapshotCreated, now, now.Format(time.RFC3339)))
		if err != nil {
			t.Fatal(err)
		}
		if policy.Due(now, bs[0].Height+1, last) {
			if last, err = s.SignCheckpoint(t.Context(), SignOptions{Signer: key.signer, File: file, Now: func() time.Time { return now }}); err != nil {
				t.Fatal(err)
			}
			signed++
		}
	}
	if signed != 3 || last.Size != 180 {
		t.Fatalf("signed %d checkpoints, the last of size %d; want 3, the last of 180", signed, last.Size)
	}
	msg, _ := os.ReadFile(file)
	if _, f := verify(t, s, VerifyOptions{Trust: &Trust{Checkpoint: msg, Verifier: key.verifier}, Incremental: true}); f != nil {
		t.Fatal(f)
	}
}
