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
		case !errors.As(err, &me) || !errors.Is(err, ErrMismatch) || !me.Failure.Reason.Heightless():
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
	s, err := NewSigner(skey)
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
	var me *MismatchError
	if _, err := s.SignCheckpoint(t.Context(), SignOptions{Signer: key.signer, Origin: "host.example/ghostbridge", File: file}); !errors.As(err, &me) || me.Failure.Reason != ReasonCheckpointOrigin {
		t.Fatalf("signing into another origin's checkpoint file: %v, want checkpoint_wrong_origin", err)
	}
	if msg, _ := os.ReadFile(file); string(msg) != c.Note {
		t.Fatal("a refused checkpoint replaced the file")
	}
	c3, err := s.SignCheckpoint(t.Context(), SignOptions{Signer: key.signer, File: file})
	if err != nil || c3.Size != 15 {
		t.Fatalf("SignCheckpoint = %+v, %v", c3, err)
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

// TestSignCheckpointChecksTheFileSignature: the checkpoint in the file is
// only a baseline once the signer's own key vouches for it.
func TestSignCheckpointChecksTheFileSignature(t *testing.T) {
	ctx := t.Context()
	s, key, other := newStore(t), newKeypair(t, "host"), newKeypair(t, "host")
	fill(t, s, 9)
	file := filepath.Join(t.TempDir(), "checkpoint")
	th, err := s.TreeHead(ctx)
	if err != nil {
		t.Fatal(err)
	}
	origin, err := s.Origin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	planted, err := note.Sign(&note.Note{Text: string(FormatCheckpoint(origin, th.Size, th.Root))}, other.signer)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, planted, 0o600); err != nil {
		t.Fatal(err)
	}
	var me *MismatchError
	if _, err := s.SignCheckpoint(ctx, SignOptions{Signer: key.signer, File: file}); !errors.As(err, &me) || me.Failure.Reason != ReasonCheckpointKey {
		t.Fatalf("signing over a checkpoint by another key: %v, want checkpoint_unknown_key", err)
	}
	if now, _ := os.ReadFile(file); string(now) != string(planted) {
		t.Fatal("the file was overwritten")
	}
	bumped := []byte(strings.Replace(string(planted), "\n10\n", "\n9\n", 1))
	if err := os.WriteFile(file, bumped, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SignCheckpoint(ctx, SignOptions{Signer: other.signer, File: file}); !errors.As(err, &me) || me.Failure.Reason != ReasonCheckpointSignature {
		t.Fatalf("signing over an edited checkpoint: %v, want checkpoint_bad_signature", err)
	}

	// A signer that does not carry its verifier needs SignOptions.Verifier.
	if err := os.WriteFile(file, planted, 0o600); err != nil {
		t.Fatal(err)
	}
	bare := struct{ note.Signer }{other.signer}
	if _, err := VerifierFor(bare); !errors.Is(err, ErrBadKey) {
		t.Fatalf("VerifierFor(a bare signer) = %v, want ErrBadKey", err)
	}
	if _, err := s.SignCheckpoint(ctx, SignOptions{Signer: bare, File: file}); err == nil || errors.Is(err, ErrMismatch) {
		t.Fatalf("signing with no verifier: %v, want an error asking for one", err)
	}
	if _, err := s.SignCheckpoint(ctx, SignOptions{Signer: bare, Verifier: key.verifier, File: file}); !errors.Is(err, ErrBadKey) {
		t.Fatalf("signing with another key's verifier: %v, want ErrBadKey", err)
	}
	more(t, s, 3)
	c, err := s.SignCheckpoint(ctx, SignOptions{Signer: bare, Verifier: other.verifier, File: file})
	if err != nil || c.Size != 13 {
		t.Fatalf("SignCheckpoint with its verifier = %+v, %v", c, err)
	}
}

// TestLatestTrustedCheckpoint forges checkpoint rows: none may seed the
// signing policy.
func TestLatestTrustedCheckpoint(t *testing.T) {
	ctx := t.Context()
	s, key, other := newStore(t), newKeypair(t, "host"), newKeypair(t, "intruder")
	if _, err := s.LatestTrustedCheckpoint(ctx, key.verifier, ""); !errors.Is(err, ErrNoCheckpoint) {
		t.Fatalf("before any: %v, want ErrNoCheckpoint", err)
	}
	fill(t, s, 9)
	c, err := s.SignCheckpoint(ctx, SignOptions{Signer: key.signer, Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.LatestTrustedCheckpoint(ctx, key.verifier, ""); err != nil || got != c {
		t.Fatalf("LatestTrustedCheckpoint = %+v, %v; want %+v", got, err, c)
	}
	other10, err := s.SignCheckpoint(ctx, SignOptions{Signer: other.signer})
	if err != nil {
		t.Fatal(err)
	}
	policy := CheckpointPolicy{Blocks: 5}
	for _, tc := range []struct {
		name string
		row  string // an INSERT INTO checkpoints ... VALUES row
	}{
		{"size column bumped to 2^62", fmt.Sprintf(`(0, '%s', %d, x'%x', 'host', '%s', '%s')`, c.Origin, int64(1)<<62, c.Root[:], c.KeyID, c.Note)},
		{"note edited", fmt.Sprintf(`(0, '%s', 1000, x'%x', 'host', '%s', '%s')`, c.Origin, c.Root[:], c.KeyID, strings.Replace(c.Note, "\n10\n", "\n1000\n", 1))},
		{"another key's note", fmt.Sprintf(`(0, '%s', 10, x'%x', 'intruder', '%s', '%s')`, c.Origin, c.Root[:], other10.KeyID, other10.Note)},
		{"another origin", func() string {
			msg, err := note.Sign(&note.Note{Text: string(FormatCheckpoint("elsewhere", 10, c.Root))}, key.signer)
			if err != nil {
				t.Fatal(err)
			}
			return fmt.Sprintf(`(0, 'elsewhere', 10, x'%x', 'host', '%s', '%s')`, c.Root[:], c.KeyID, msg)
		}()},
		{"a tree larger than the chain", func() string {
			msg, err := note.Sign(&note.Note{Text: string(FormatCheckpoint(c.Origin, 1000, c.Root))}, key.signer)
			if err != nil {
				t.Fatal(err)
			}
			return fmt.Sprintf(`(0, '%s', 1000, x'%x', 'host', '%s', '%s')`, c.Origin, c.Root[:], c.KeyID, msg)
		}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := s.db.Exec(`INSERT INTO checkpoints (time_ns, origin, size, root, key_name, key_id, note) VALUES ` + tc.row)
			if err != nil {
				t.Fatal(err)
			}
			id, _ := res.LastInsertId()
			defer s.db.Exec(`DELETE FROM checkpoints WHERE id = ?`, id) //nolint:errcheck
			got, err := s.LatestTrustedCheckpoint(ctx, key.verifier, "")
			if !errors.Is(err, ErrBadCheckpoint) || got != (Checkpoint{}) {
				t.Fatalf("LatestTrustedCheckpoint = %+v, %v; want the zero checkpoint and ErrBadCheckpoint", got, err)
			}
			if !policy.Due(t0, 10, got) {
				t.Error("the policy seeded from it does not sign")
			}
		})
	}
}
