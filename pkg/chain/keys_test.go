package chain

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ghostbridge/ghostbridge/internal/testenv"
)

func TestGenerateKey(t *testing.T) {
	signer, verifier, err := GenerateKey("host.example/ghostbridge")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(signer, "PRIVATE+KEY+host.example/ghostbridge+") || !strings.HasPrefix(verifier, "host.example/ghostbridge+") {
		t.Fatalf("keys %q / %q are not note keys named host.example/ghostbridge", redact(signer), verifier)
	}
	for _, name := range []string{"", "two words", "a+b", "tab\tname", "\xff"} {
		if _, _, err := GenerateKey(name); err == nil {
			t.Errorf("GenerateKey(%q) succeeded", name)
		}
	}
}

// redact keeps a signing key out of test output too.
func redact(skey string) string {
	return strings.TrimSuffix(skey, keySecret(skey)) + "…"
}

// keySecret returns the part of a signing key that must never be shown:
// the base64 after PRIVATE+KEY+<name>+<id>+ (base64 may itself hold '+').
func keySecret(skey string) string {
	parts := strings.SplitN(skey, "+", 5)
	if len(parts) < 5 {
		return skey
	}
	return parts[4]
}

func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	skey, vkey, err := GenerateKey("host")
	if err != nil {
		t.Fatal(err)
	}
	sfile, vfile := filepath.Join(dir, "signing.key"), filepath.Join(dir, "verifier.key")
	if err := WriteKeyFile(sfile, skey); err != nil {
		t.Fatal(err)
	}
	if err := WriteKeyFile(vfile, vkey); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(sfile)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("signing key file mode %v (%v), want 0600", st.Mode().Perm(), err)
	}
	other, _, _ := GenerateKey("other")
	err = WriteKeyFile(sfile, other)
	if !errors.Is(err, ErrKeyExists) {
		t.Fatalf("overwriting a key file: %v, want ErrKeyExists", err)
	}
	if strings.Contains(err.Error(), keySecret(other)) || strings.Contains(err.Error(), keySecret(skey)) {
		t.Fatal("the refusal shows key material")
	}
	if data, _ := os.ReadFile(sfile); string(data) != skey+"\n" {
		t.Fatal("the key file changed")
	}

	signer, err := LoadSigner(sfile)
	if err != nil || signer.Name() != "host" {
		t.Fatalf("LoadSigner = %v, %v", signer, err)
	}
	verifier, err := LoadVerifier(vfile)
	if err != nil || verifier.Name() != "host" || verifier.KeyHash() != signer.KeyHash() {
		t.Fatalf("LoadVerifier = %v, %v", verifier, err)
	}
	if err := os.Chmod(sfile, 0o400); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSigner(sfile); err != nil {
		t.Errorf("a 0400 signing key was refused: %v", err)
	}

	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660, 0o700, 0o666} {
		if err := os.Chmod(sfile, mode); err != nil {
			t.Fatal(err)
		}
		_, err := LoadSigner(sfile)
		if !errors.Is(err, ErrKeyPermissions) {
			t.Fatalf("mode %04o: %v, want ErrKeyPermissions", mode, err)
		}
		msg := err.Error()
		if !strings.Contains(msg, sfile) || !strings.Contains(msg, "0"+octal(mode)) {
			t.Errorf("mode %04o: message %q does not name the file and its mode", mode, msg)
		}
		if strings.Contains(msg, keySecret(skey)) {
			t.Fatalf("mode %04o: the message shows the key", mode)
		}
	}
	if err := os.Chmod(sfile, 0o600); err != nil {
		t.Fatal(err)
	}

	// Each file where the other is expected: refused, without echoing it.
	if _, err := LoadSigner(vfile); !errors.Is(err, ErrBadKey) {
		t.Errorf("LoadSigner(verifier file) = %v, want ErrBadKey", err)
	}
	_, err = LoadVerifier(sfile)
	if !errors.Is(err, ErrBadKey) || strings.Contains(err.Error(), keySecret(skey)) {
		t.Errorf("LoadVerifier(signing key file) = %v, want ErrBadKey without the key", err)
	}
	if _, err := NewVerifier(skey); !errors.Is(err, ErrBadKey) || strings.Contains(err.Error(), keySecret(skey)) {
		t.Errorf("NewVerifier(signing key) = %v, want ErrBadKey without the key", err)
	}
	broken := filepath.Join(dir, "broken.key")
	if err := os.WriteFile(broken, []byte(skey[:len(skey)-6]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = LoadSigner(broken)
	if !errors.Is(err, ErrBadKey) || strings.Contains(err.Error(), keySecret(skey)[:20]) {
		t.Errorf("LoadSigner(truncated key) = %v, want ErrBadKey without key material", err)
	}
	if _, err := LoadSigner(filepath.Join(dir, "missing.key")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadSigner(missing) = %v", err)
	}
	if _, err := LoadSigner(dir); !errors.Is(err, ErrBadKey) {
		t.Errorf("LoadSigner(directory) = %v, want ErrBadKey", err)
	}
}

func octal(mode os.FileMode) string {
	const digits = "01234567"
	p := mode.Perm()
	return string([]byte{digits[p>>6&7], digits[p>>3&7], digits[p&7]})
}

// TestKeyNeverLogged signs with a debug logger attached and checks the
// signing key appears nowhere in the log.
func TestKeyNeverLogged(t *testing.T) {
	var logs bytes.Buffer
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "chain.db"), Options{Create: true, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	skey, _, err := GenerateKey("host")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "signing.key")
	if err := WriteKeyFile(file, skey); err != nil {
		t.Fatal(err)
	}
	signer, err := LoadSigner(file)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.SignCheckpoint(t.Context(), SignOptions{Signer: signer, File: filepath.Join(t.TempDir(), "cp")}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "checkpoint signed") {
		t.Fatalf("no debug log of the signing: %q", logs.String())
	}
	if strings.Contains(logs.String(), keySecret(skey)) || strings.Contains(logs.String(), "PRIVATE") {
		t.Fatal("the signing key is in the log")
	}
}

// TestKeyFileOwnerAndType: a signing key another user owns is refused,
// whatever its mode, and a FIFO where a key should be is refused at once
// rather than blocking until someone writes to it.
func TestKeyFileOwnerAndType(t *testing.T) {
	dir := t.TempDir()
	skey, vkey, err := GenerateKey("host")
	if err != nil {
		t.Fatal(err)
	}
	sfile := filepath.Join(dir, "signing.key")
	if err := WriteKeyFile(sfile, skey); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		testenv.Skip(t, "changing a file's owner needs root")
	}
	const nobody = 65534
	if err := os.Chown(sfile, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	_, err = LoadSigner(sfile)
	if !errors.Is(err, ErrKeyPermissions) {
		t.Fatalf("LoadSigner(a key owned by uid %d) = %v, want ErrKeyPermissions", nobody, err)
	}
	if msg := err.Error(); !strings.Contains(msg, sfile) || !strings.Contains(msg, "uid 65534") || strings.Contains(msg, keySecret(skey)) {
		t.Errorf("message %q should name the file and the owner, and no key material", msg)
	}
	if err := os.Chown(sfile, os.Geteuid(), os.Getegid()); err != nil {
		t.Fatal(err)
	}
	s, err := LoadSigner(sfile)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := VerifierFor(s); err != nil || v.Name() != "host" || v.KeyHash() != s.KeyHash() {
		t.Fatalf("VerifierFor(LoadSigner) = %v, %v", v, err)
	}
	if want, _ := NewVerifier(vkey); want == nil {
		t.Fatal("verifier key does not parse")
	}

	fifo := filepath.Join(dir, "fifo.key")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSigner(fifo); !errors.Is(err, ErrBadKey) {
		t.Errorf("LoadSigner(FIFO) = %v, want ErrBadKey", err)
	}
	if _, err := LoadVerifier(fifo); !errors.Is(err, ErrBadKey) {
		t.Errorf("LoadVerifier(FIFO) = %v, want ErrBadKey", err)
	}
}
