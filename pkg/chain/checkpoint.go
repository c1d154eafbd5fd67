package chain

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/ghostbridge/ghostbridge/pkg/sys/regfile"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// A checkpoint is a signed statement of the tree head, in the C2SP
// tlog-checkpoint form: a note (golang.org/x/mod/sumdb/note) whose text is
//
//	<origin>
//	<tree size, decimal>
//	<root hash, base64>
//
// followed by a blank line and signature lines. Stored in the database and
// written to a file kept elsewhere, it lets verification notice a database
// that was rewritten or replaced by an older copy.

// Checkpoint errors callers tell apart.
var (
	// ErrNoCheckpoint: no checkpoint has been signed yet, or none covers
	// the height asked for.
	ErrNoCheckpoint = errors.New("no checkpoint")
	// ErrBadCheckpoint: text that is not a checkpoint.
	ErrBadCheckpoint = errors.New("not a checkpoint")
)

// DefaultCheckpointBlocks is how many blocks `snap run` appends between two
// checkpoints by default.
const DefaultCheckpointBlocks = 60

// DefaultOrigin is a chain's checkpoint origin unless configured otherwise.
func DefaultOrigin(chainID string) string { return "ghostbridge/" + chainID }

// Checkpoint is a signed tree head.
type Checkpoint struct {
	Origin string `json:"origin"`
	Size   uint64 `json:"size"`
	Root   Hash   `json:"root"`
	// KeyName and KeyID (8 hex digits) name the key that signed it.
	KeyName string `json:"key_name,omitempty"`
	KeyID   string `json:"key_id,omitempty"`
	// Time is when it was signed, as recorded in the database; it is not
	// part of the signed text.
	Time time.Time `json:"time,omitzero"`
	// Note is the signed note, byte for byte as in the checkpoint file.
	Note string `json:"note,omitempty"`
}

// FormatCheckpoint returns the checkpoint text (the part that is signed).
func FormatCheckpoint(origin string, size uint64, root Hash) []byte {
	b := make([]byte, 0, len(origin)+70)
	b = append(b, origin...)
	b = append(b, '\n')
	b = strconv.AppendUint(b, size, 10)
	b = append(b, '\n')
	b = base64.StdEncoding.AppendEncode(b, root[:])
	return append(b, '\n')
}

var strictBase64 = base64.StdEncoding.Strict()

// ParseCheckpoint parses checkpoint text (without signatures). Lines after
// the third are extension lines, which C2SP allows and this ignores; they
// must not be empty.
func ParseCheckpoint(text []byte) (Checkpoint, error) {
	var c Checkpoint
	if len(text) == 0 || text[len(text)-1] != '\n' {
		return c, fmt.Errorf("%w: text must end in a newline", ErrBadCheckpoint)
	}
	lines := strings.Split(string(text[:len(text)-1]), "\n")
	if len(lines) < 3 {
		return c, fmt.Errorf("%w: want origin, size and root hash lines, have %d lines", ErrBadCheckpoint, len(lines))
	}
	if err := checkOrigin(lines[0]); err != nil {
		return c, fmt.Errorf("%w: origin: %v", ErrBadCheckpoint, err)
	}
	size, err := parseCanonicalUint([]byte(lines[1]))
	if err != nil || size > math.MaxInt64 {
		return c, fmt.Errorf("%w: tree size %q is not a decimal number", ErrBadCheckpoint, lines[1])
	}
	root, err := strictBase64.DecodeString(lines[2])
	if err != nil || len(root) != len(c.Root) {
		return c, fmt.Errorf("%w: root hash %q is not %d bytes in base64", ErrBadCheckpoint, lines[2], len(c.Root))
	}
	for i, l := range lines[3:] {
		if l == "" || !utf8.ValidString(l) {
			return c, fmt.Errorf("%w: extension line %d is empty or not UTF-8", ErrBadCheckpoint, i+1)
		}
	}
	c.Origin, c.Size = lines[0], size
	copy(c.Root[:], root)
	return c, nil
}

// checkOrigin applies C2SP's rules for an origin line: non-empty UTF-8
// without control characters; and note's rule for names (no spaces, no
// '+'), so an origin can also name a key.
func checkOrigin(origin string) error {
	switch {
	case origin == "":
		return errors.New("empty")
	case !utf8.ValidString(origin):
		return errors.New("not UTF-8")
	case strings.IndexFunc(origin, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		return errors.New("contains a space or control character")
	case strings.Contains(origin, "+"):
		return errors.New("contains '+'")
	}
	return nil
}

// OpenCheckpoint checks a signed checkpoint: it must be signed by v's key
// and, unless origin is empty, name origin. Its error is a *MismatchError
// (wrapping ErrMismatch) with one of the Reason values for checkpoints.
func OpenCheckpoint(msg []byte, v note.Verifier, origin string) (Checkpoint, error) {
	c, f := openCheckpoint(msg, v, origin)
	if f != nil {
		return c, &MismatchError{Failure: *f}
	}
	return c, nil
}

func openCheckpoint(msg []byte, v note.Verifier, origin string) (Checkpoint, *Failure) {
	var c Checkpoint
	bad := func(reason Reason, format string, args ...any) (Checkpoint, *Failure) {
		return c, &Failure{Reason: reason, Detail: fmt.Sprintf(format, args...)}
	}
	if v == nil {
		return bad(ReasonCheckpointKey, "no verifier key to check the checkpoint with")
	}
	if err := canonicalSignatures(msg); err != nil {
		return bad(ReasonCheckpointMalformed, "%v", err)
	}
	n, err := note.Open(msg, note.VerifierList(v))
	var (
		invalid    *note.InvalidSignatureError
		unverified *note.UnverifiedNoteError
	)
	switch {
	case errors.As(err, &invalid):
		return bad(ReasonCheckpointSignature, "the signature by key %s+%08x does not verify: the checkpoint was changed after it was signed", invalid.Name, invalid.Hash)
	case errors.As(err, &unverified):
		var by []string
		for _, s := range unverified.Note.UnverifiedSigs {
			by = append(by, fmt.Sprintf("%s+%08x", s.Name, s.Hash))
		}
		return bad(ReasonCheckpointKey, "signed by %s, not by the trusted key %s+%08x", strings.Join(by, ", "), v.Name(), v.KeyHash())
	case err != nil:
		return bad(ReasonCheckpointMalformed, "not a signed note: %v", err)
	}
	c, err = ParseCheckpoint([]byte(n.Text))
	if err != nil {
		return bad(ReasonCheckpointMalformed, "%v", err)
	}
	c.KeyName, c.KeyID, c.Note = n.Sigs[0].Name, fmt.Sprintf("%08x", n.Sigs[0].Hash), string(msg)
	if origin != "" && c.Origin != origin {
		return c, &Failure{Reason: ReasonCheckpointOrigin, Detail: fmt.Sprintf("the checkpoint is for origin %q, this chain's is %q", c.Origin, origin)}
	}
	return c, nil
}

// canonicalSignatures rejects signature lines whose base64 is not in
// canonical form. note.Open decodes leniently, so without this two
// different byte strings (differing in the unused low bits of the last
// base64 digit) would carry the same valid signature, and a changed byte
// in a proof bundle would go unnoticed.
func canonicalSignatures(msg []byte) error {
	i := bytes.LastIndex(msg, []byte("\n\n"))
	if i < 0 {
		return errors.New("no blank line before the signatures")
	}
	for _, line := range strings.SplitAfter(string(msg[i+2:]), "\n") {
		if line == "" {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		b64 := strings.TrimSuffix(line[sp+1:], "\n")
		raw, err := strictBase64.DecodeString(b64)
		if err != nil || base64.StdEncoding.EncodeToString(raw) != b64 {
			return errors.New("a signature is not canonical base64")
		}
	}
	return nil
}

// noteText returns the signed text of a note: everything up to and
// including the newline before the blank line that starts the signatures.
func noteText(msg []byte) []byte {
	i := bytes.LastIndex(msg, []byte("\n\n"))
	if i < 0 {
		return msg
	}
	return msg[:i+1]
}

// Origin returns the chain's default checkpoint origin.
func (s *Store) Origin(ctx context.Context) (string, error) {
	id, err := s.ChainID(ctx)
	if err != nil {
		return "", err
	}
	return DefaultOrigin(id), nil
}

// SignOptions say how SignCheckpoint signs.
type SignOptions struct {
	Signer note.Signer
	// Verifier is Signer's public key, which checks the checkpoint
	// already in File before it is replaced. Nil means the one derived
	// from Signer, which then must come from LoadSigner or NewSigner.
	Verifier note.Verifier
	// Origin names the log in the checkpoint; empty means
	// DefaultOrigin(chain ID).
	Origin string
	// File, when set, also receives the new checkpoint (atomically, mode
	// 0600), once the chain checks out against the checkpoint it holds.
	File string
	// Now stamps the stored checkpoint; nil means time.Now.
	Now func() time.Time
}

// SignCheckpoint signs the current tree head, stores the checkpoint and,
// with opts.File, writes it to that file.
//
// When the file already holds a checkpoint, SignCheckpoint first checks it
// with the signer's own key and verifies the chain from it to the head as
// incremental Verify does (the stored tree has its root, the blocks after
// it re-hashed with their tree hashes, the new tree extends it), and signs
// the tree head that verification found. When anything fails (a
// checkpoint signed by another key or for another origin, a chain that is
// shorter, rewritten or does not extend it) it signs nothing and returns
// a *MismatchError, leaving the file as evidence: signing a rewritten
// history would launder it.
func (s *Store) SignCheckpoint(ctx context.Context, opts SignOptions) (Checkpoint, error) {
	var c Checkpoint
	if opts.Signer == nil {
		return c, errors.New("sign checkpoint: no signing key")
	}
	origin, err := s.resolveOrigin(ctx, opts.Origin)
	if err != nil {
		return c, err
	}
	th, checked, err := s.extendFile(ctx, opts, origin)
	if err != nil {
		return c, err
	}
	if !checked {
		if th, err = s.TreeHead(ctx); err != nil {
			return c, err
		}
	}
	msg, err := note.Sign(&note.Note{Text: string(FormatCheckpoint(origin, th.Size, th.Root))}, opts.Signer)
	if err != nil {
		return c, fmt.Errorf("sign checkpoint: %w", err)
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	c = Checkpoint{
		Origin: origin, Size: th.Size, Root: th.Root,
		KeyName: opts.Signer.Name(), KeyID: fmt.Sprintf("%08x", opts.Signer.KeyHash()),
		Time: now().UTC(), Note: string(msg),
	}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO checkpoints (time_ns, origin, size, root, key_name, key_id, note) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		c.Time.UnixNano(), c.Origin, int64(c.Size), c.Root[:], c.KeyName, c.KeyID, c.Note); err != nil {
		return c, fmt.Errorf("chain %s: store checkpoint: %w", s.path, err)
	}
	s.log.Debug("checkpoint signed", "db", s.path, "size", c.Size, "origin", c.Origin, "key", c.KeyName)
	if opts.File != "" {
		if err := writeFileAtomic(opts.File, msg); err != nil {
			return c, fmt.Errorf("checkpoint file %s: %w", opts.File, err)
		}
	}
	return c, nil
}

// extendFile verifies the chain from the checkpoint in opts.File, when
// there is one, and returns the tree head it verified (checked true). The
// checkpoint's signature is checked with the signer's own key: its size
// and root are what the new checkpoint vouches the chain extends.
func (s *Store) extendFile(ctx context.Context, opts SignOptions, origin string) (th TreeHead, checked bool, err error) {
	if opts.File == "" {
		return th, false, nil
	}
	msg, err := regfile.Read(opts.File, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return th, false, nil
	}
	if err != nil {
		return th, false, fmt.Errorf("checkpoint file %s: %w", opts.File, err)
	}
	if _, err := ParseCheckpoint(noteText(msg)); err != nil {
		return th, false, fmt.Errorf("checkpoint file %s: %w; move it away to start a new one", opts.File, err)
	}
	v := opts.Verifier
	if v == nil {
		if v, err = VerifierFor(opts.Signer); err != nil {
			return th, false, fmt.Errorf("sign checkpoint: %w: set SignOptions.Verifier to check the checkpoint file %s with", err, opts.File)
		}
	}
	if v.Name() != opts.Signer.Name() || v.KeyHash() != opts.Signer.KeyHash() {
		return th, false, fmt.Errorf("sign checkpoint: %w: the verifier key %s+%08x is not the signing key's (%s+%08x)",
			ErrBadKey, v.Name(), v.KeyHash(), opts.Signer.Name(), opts.Signer.KeyHash())
	}
	res, err := s.Verify(ctx, VerifyOptions{Trust: &Trust{Checkpoint: msg, Verifier: v, Origin: origin}, Incremental: true})
	var me *MismatchError
	if errors.As(err, &me) {
		f := me.Failure
		f.Detail = fmt.Sprintf("checkpoint file %s: %s; refusing to overwrite it", opts.File, f.Detail)
		return th, false, &MismatchError{Failure: f}
	}
	if err != nil {
		return th, false, fmt.Errorf("checkpoint file %s: verify the chain from it: %w", opts.File, err)
	}
	if res.Tree == nil {
		return th, false, fmt.Errorf("checkpoint file %s: verification found no tree head", opts.File)
	}
	return *res.Tree, true, nil
}

func (s *Store) resolveOrigin(ctx context.Context, origin string) (string, error) {
	if origin == "" {
		return s.Origin(ctx)
	}
	if err := checkOrigin(origin); err != nil {
		return "", fmt.Errorf("checkpoint origin %q: %w", origin, err)
	}
	return origin, nil
}

// LatestCheckpoint returns the checkpoint signed last (ErrNoCheckpoint
// when there is none), as its database row says: the size, root and time
// columns are not checked against the signed note. Decide nothing on it;
// seed a CheckpointPolicy with LatestTrustedCheckpoint.
func (s *Store) LatestCheckpoint(ctx context.Context) (Checkpoint, error) {
	return s.latestCheckpoint(ctx, s.db, 0)
}

// LatestTrustedCheckpoint returns the checkpoint signed last once it
// checks out: its note is signed by v's key for origin (empty means the
// chain's DefaultOrigin), its columns are what the note says, and its
// tree is no larger than the chain. A writer seeds its CheckpointPolicy
// with it: a forged row (say, of size 2^62) would otherwise keep the
// policy from ever signing again. When the newest row does not check out
// it returns the zero Checkpoint and an error wrapping ErrBadCheckpoint,
// for the caller to log before starting from zero (a checkpoint is then
// due at once); ErrNoCheckpoint when none has been signed.
func (s *Store) LatestTrustedCheckpoint(ctx context.Context, v note.Verifier, origin string) (Checkpoint, error) {
	origin, err := s.resolveOrigin(ctx, origin)
	if err != nil {
		return Checkpoint{}, err
	}
	var (
		c    Checkpoint
		head Block
	)
	err = s.readTx(ctx, func(tx *sql.Tx) error {
		var err error
		if c, err = s.latestCheckpoint(ctx, tx, 0); err != nil {
			return err
		}
		head, err = scanHead(tx.StmtContext(ctx, s.head).QueryRowContext(ctx))
		return err
	})
	if err != nil {
		return Checkpoint{}, err
	}
	bad := func(format string, args ...any) (Checkpoint, error) {
		return Checkpoint{}, fmt.Errorf("chain %s: the latest stored checkpoint (row of size %d) is ignored: %w: %s",
			s.path, c.Size, ErrBadCheckpoint, fmt.Sprintf(format, args...))
	}
	signed, f := openCheckpoint([]byte(c.Note), v, origin)
	if f != nil {
		return bad("%s: %s", f.Reason, f.Detail)
	}
	if signed.Origin != c.Origin || signed.Size != c.Size || signed.Root != c.Root {
		return bad("its columns say size %d root %s, its signed note size %d root %s", c.Size, c.Root, signed.Size, signed.Root)
	}
	if size := head.Height + 1; c.Size > size {
		return bad("it signs %d blocks, the chain has %d", c.Size, size)
	}
	return c, nil
}

// latestCheckpoint returns the newest checkpoint whose tree is larger than
// minSize.
func (s *Store) latestCheckpoint(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, minSize uint64) (Checkpoint, error) {
	var (
		c            Checkpoint
		timeNS, size int64
		root         []byte
	)
	err := q.QueryRowContext(ctx, `SELECT time_ns, origin, size, root, key_name, key_id, note FROM checkpoints WHERE size > ? ORDER BY id DESC LIMIT 1`, int64(minSize)).
		Scan(&timeNS, &c.Origin, &size, &root, &c.KeyName, &c.KeyID, &c.Note)
	if errors.Is(err, sql.ErrNoRows) {
		if minSize > 0 {
			return c, fmt.Errorf("%w covers height %d yet: sign one first", ErrNoCheckpoint, minSize)
		}
		return c, fmt.Errorf("%w has been signed yet", ErrNoCheckpoint)
	}
	if err != nil {
		return c, fmt.Errorf("chain %s: checkpoint: %w", s.path, err)
	}
	if len(root) != len(c.Root) {
		return c, fmt.Errorf("chain %s: stored checkpoint of size %d: %w: root is %d bytes", s.path, size, ErrBadCheckpoint, len(root))
	}
	c.Time, c.Size = time.Unix(0, timeNS).UTC(), uint64(size)
	copy(c.Root[:], root)
	return c, nil
}

// behindReason tells a chain cut short (the tree still holds hashes of
// blocks that are gone) from a whole older copy. It reads the head and the
// tree's end in tx, so a writer appending meanwhile changes neither.
func (s *Store) behindReason(ctx context.Context, tx *sql.Tx) Reason {
	head, maxID, err := s.treeEndTx(ctx, tx)
	if err == nil && maxID.Valid && maxID.Int64 >= tlog.StoredHashCount(int64(head.Height+1)) {
		return ReasonTruncated
	}
	return ReasonRolledBack
}

// writeFileAtomic replaces path with data (mode 0600), creating its
// directory (0700) when missing; a crash leaves the old checkpoint or the
// new one, never a torn file.
func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return regfile.WriteAtomic(path, data)
}

// CheckpointPolicy says when a writer signs the next checkpoint: once
// Blocks blocks were added since the last one, or once Interval has passed
// since it and at least one block was added. A zero field does not
// trigger; the zero policy never signs.
type CheckpointPolicy struct {
	Blocks   uint64        `json:"blocks"`
	Interval time.Duration `json:"interval"`
}

// Due reports whether a checkpoint should be signed at now, for a tree of
// size blocks, given the last checkpoint (the zero Checkpoint when none has
// been signed).
func (p CheckpointPolicy) Due(now time.Time, size uint64, last Checkpoint) bool {
	if size <= last.Size {
		return false
	}
	if p.Blocks > 0 && size-last.Size >= p.Blocks {
		return true
	}
	return p.Interval > 0 && !now.Before(last.Time.Add(p.Interval))
}
