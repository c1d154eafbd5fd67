package chain

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"unicode"
	"unicode/utf8"

	"github.com/ghostbridge/ghostbridge/pkg/sys/regfile"
	"golang.org/x/mod/sumdb/note"
)

// Keys are golang.org/x/mod/sumdb/note Ed25519 keys in note's text form:
// the signing key "PRIVATE+KEY+<name>+<hash>+<base64>", the verifier key
// "<name>+<hash>+<base64>". A key file holds one key and a newline. No
// error or log line of this package contains key material: errors about a
// key name its file, never its contents.

// Key errors callers tell apart.
var (
	// ErrKeyExists: WriteKeyFile refuses to replace an existing file.
	ErrKeyExists = errors.New("key file already exists")
	// ErrKeyPermissions: a signing-key file is readable or writable by
	// others than its owner, or owned by another user.
	ErrKeyPermissions = errors.New("signing key file permissions are wider than 0600 or its owner is another user")
	// ErrBadKey: the file or text is not a key of the expected kind.
	ErrBadKey = errors.New("not a valid key")
)

const signerPrefix = "PRIVATE+KEY+"

// GenerateKey makes a new Ed25519 key pair named name (no spaces, no '+').
// signer must stay secret (WriteKeyFile stores it 0600); verifier is what
// auditors and `chain verify` check signatures with.
func GenerateKey(name string) (signer, verifier string, err error) {
	if err := validName(name); err != nil {
		return "", "", fmt.Errorf("key name %q: %w", name, err)
	}
	signer, verifier, err = note.GenerateKey(rand.Reader, name)
	if err != nil {
		return "", "", fmt.Errorf("generate key %q: %w", name, err)
	}
	return signer, verifier, nil
}

// validName applies note's rule for key names and checkpoint origins.
func validName(name string) error {
	switch {
	case name == "":
		return errors.New("empty")
	case !utf8.ValidString(name):
		return errors.New("not UTF-8")
	case strings.IndexFunc(name, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		return errors.New("contains a space or control character")
	case strings.Contains(name, "+"):
		return errors.New("contains '+'")
	}
	return nil
}

// WriteKeyFile writes key and a newline to a new file at path with mode
// 0600. It never replaces an existing file (ErrKeyExists): a key
// overwritten by mistake cannot be recovered, and checkpoints signed with
// it could no longer be checked.
func WriteKeyFile(path, key string) (err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("key file %s: %w: refusing to overwrite it", path, ErrKeyExists)
	}
	if err != nil {
		return fmt.Errorf("key file %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			_ = os.Remove(path) // leave no half-written key behind
		}
	}()
	// The umask may not narrow 0600, but nothing must widen it either.
	if err := f.Chmod(0o600); err != nil {
		return errors.Join(fmt.Errorf("key file %s: %w", path, err), f.Close())
	}
	if _, err := f.WriteString(key + "\n"); err != nil {
		return errors.Join(fmt.Errorf("key file %s: write: %w", path, err), f.Close())
	}
	if err := f.Sync(); err != nil {
		return errors.Join(fmt.Errorf("key file %s: sync: %w", path, err), f.Close())
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("key file %s: %w", path, err)
	}
	return regfile.SyncDir(filepath.Dir(path))
}

// LoadSigner reads a signing key from path. It refuses a file whose mode
// grants anything beyond owner read and write, or that another user owns
// (ErrKeyPermissions), naming the path and the mode or owner, and a file
// that holds no signing key (ErrBadKey). The signer it returns knows its
// verifier (VerifierFor).
func LoadSigner(path string) (note.Signer, error) {
	data, err := readKeyFile(path, true)
	if err != nil {
		return nil, err
	}
	defer clear(data)
	text := string(bytes.TrimSuffix(data, []byte("\n")))
	if !strings.HasPrefix(text, signerPrefix) {
		return nil, fmt.Errorf("signing key %s: %w: the file does not hold a signing key (one starts with %q; is it the verifier key?)", path, ErrBadKey, signerPrefix)
	}
	s, err := NewSigner(text)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	return s, nil
}

// signingKey is a note.Signer that also knows its verifier, so the
// checkpoint file can be checked with the key that will replace it.
type signingKey struct {
	note.Signer
	verifier note.Verifier
}

// NewSigner parses a signing key in note's text form. The signer it
// returns knows its verifier (VerifierFor).
func NewSigner(skey string) (note.Signer, error) {
	// note's parse errors carry no key material, but say nothing of the
	// key anyway: this message may end up in a journal.
	malformed := fmt.Errorf("%w: the signing key is malformed", ErrBadKey)
	s, err := note.NewSigner(skey)
	if err != nil {
		return nil, malformed
	}
	v, err := verifierOf(skey)
	if err != nil {
		return nil, malformed
	}
	return &signingKey{Signer: s, verifier: v}, nil
}

// verifierOf derives the verifier key from a signing key's text
// ("PRIVATE+KEY+<name>+<hash>+<base64 of 0x01 and the Ed25519 seed>").
// note.NewVerifier checks the key hash, so a mismatch cannot pass.
func verifierOf(skey string) (note.Verifier, error) {
	parts := strings.SplitN(strings.TrimPrefix(skey, signerPrefix), "+", 3)
	if len(parts) != 3 {
		return nil, ErrBadKey
	}
	raw, err := base64.StdEncoding.DecodeString(parts[2])
	defer clear(raw)
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != 1 {
		return nil, ErrBadKey
	}
	priv := ed25519.NewKeyFromSeed(raw[1:])
	defer clear(priv)
	pub := append([]byte{1}, priv.Public().(ed25519.PublicKey)...)
	return note.NewVerifier(parts[0] + "+" + parts[1] + "+" + base64.StdEncoding.EncodeToString(pub))
}

// VerifierFor returns the verifier of a signer that LoadSigner or
// NewSigner returned (ErrBadKey for any other note.Signer).
func VerifierFor(s note.Signer) (note.Verifier, error) {
	if k, ok := s.(*signingKey); ok {
		return k.verifier, nil
	}
	return nil, fmt.Errorf("%w: the signer does not carry its verifier key (load it with chain.LoadSigner or chain.NewSigner)", ErrBadKey)
}

// LoadVerifier reads a verifier (public) key from path.
func LoadVerifier(path string) (note.Verifier, error) {
	data, err := readKeyFile(path, false)
	if err != nil {
		return nil, err
	}
	text := string(bytes.TrimSuffix(data, []byte("\n")))
	if strings.HasPrefix(text, signerPrefix) {
		clear(data)
		return nil, fmt.Errorf("verifier key %s: %w: the file holds a signing (private) key; give the verifier key, and keep this file secret", path, ErrBadKey)
	}
	v, err := NewVerifier(text)
	if err != nil {
		return nil, fmt.Errorf("verifier key %s: %w", path, err)
	}
	return v, nil
}

// NewVerifier parses a verifier key in note's text form.
func NewVerifier(vkey string) (note.Verifier, error) {
	if strings.HasPrefix(vkey, signerPrefix) {
		return nil, fmt.Errorf("%w: that is a signing (private) key, not a verifier key", ErrBadKey)
	}
	v, err := note.NewVerifier(strings.TrimSpace(vkey))
	if err != nil {
		return nil, fmt.Errorf("%w: verifier key: %v", ErrBadKey, err)
	}
	return v, nil
}

// readKeyFile reads a key file, checking the file it opened (not the
// path, which could change in between). It opens without blocking, so a
// FIFO at the path is refused instead of hanging the caller; a private
// key must be a regular file of mode 0600 or narrower owned by the
// effective user, as ssh requires of its keys: a key another user owns
// could have been put there, or read, by them.
func readKeyFile(path string, private bool) ([]byte, error) {
	what := "verifier key"
	if private {
		what = "signing key"
	}
	f, st, err := regfile.Open(path)
	var nr *regfile.NotRegularError
	if errors.As(err, &nr) {
		return nil, fmt.Errorf("%s %s: %w: not a regular file (%s)", what, path, ErrBadKey, nr.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer f.Close()
	if perm := st.Mode().Perm(); private && perm&^0o600 != 0 {
		return nil, fmt.Errorf("signing key %s: %w: mode is %04o; run: chmod 600 %s", path, ErrKeyPermissions, perm, path)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); private && ok && int(sys.Uid) != os.Geteuid() {
		return nil, fmt.Errorf("signing key %s: %w: owned by uid %d, but ghostbridge runs as uid %d; run: chown %d %s",
			path, ErrKeyPermissions, sys.Uid, os.Geteuid(), os.Geteuid(), path)
	}
	const maxKey = 4096
	data, err := io.ReadAll(io.LimitReader(f, maxKey+1))
	if err != nil {
		clear(data)
		return nil, fmt.Errorf("%s %s: read: %w", what, path, err)
	}
	if len(data) > maxKey {
		clear(data)
		return nil, fmt.Errorf("%s %s: %w: longer than %d bytes", what, path, ErrBadKey, maxKey)
	}
	return data, nil
}
