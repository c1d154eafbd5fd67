package chain

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// BundleHeader is the first line of a proof bundle. It names the format's
// version: a new format would get a new header.
const BundleHeader = "ghostbridge.proof.v1"

// maxProof bounds the inclusion proof of a tree of up to 2^63 leaves.
const maxProof = 63

// ErrBadBundle marks bytes that are not a proof bundle in canonical form.
var ErrBadBundle = errors.New("not a proof bundle")

// Bundle is an offline proof that a block is in the tree a checkpoint
// signs: what an auditor needs, with the verifier key and no database.
// Its text form (Bytes, ParseBundle) is
//
//	ghostbridge.proof.v1
//	<the block's record: ghostbridge.block.v1 HEIGHT ...>
//	<inclusion proof hash 1, base64>
//	...
//	<inclusion proof hash k, base64>
//	<empty line>
//	<signed checkpoint note, byte for byte>
//
// Every line ends in one newline. The proof hashes are tlog's RecordProof
// for leaf HEIGHT in the tree of the checkpoint's size, leaf first.
type Bundle struct {
	Block      Block  // decoded from the record; Hash is SHA-256 of the record
	Proof      []Hash // the inclusion proof
	Checkpoint []byte // the signed checkpoint note
}

// Bytes returns the bundle's text form.
func (b *Bundle) Bytes() []byte {
	var buf bytes.Buffer
	buf.WriteString(BundleHeader + "\n")
	buf.Write(b.Block.Record())
	buf.WriteByte('\n')
	for _, h := range b.Proof {
		buf.WriteString(base64.StdEncoding.EncodeToString(h[:]))
		buf.WriteByte('\n')
	}
	buf.WriteByte('\n')
	buf.Write(b.Checkpoint)
	return buf.Bytes()
}

// ParseBundle decodes a bundle's text form. Only the canonical form
// parses: Bytes of the result reproduces data exactly, so no byte of a
// bundle can change without changing what it says.
func ParseBundle(data []byte) (Bundle, error) {
	var b Bundle
	rest, ok := bytes.CutPrefix(data, []byte(BundleHeader+"\n"))
	if !ok {
		return b, fmt.Errorf("%w: the first line is not %q", ErrBadBundle, BundleHeader)
	}
	i := bytes.Index(rest, []byte("\n\n"))
	if i < 0 {
		return b, fmt.Errorf("%w: no empty line before the checkpoint", ErrBadBundle)
	}
	lines := strings.Split(string(rest[:i]), "\n")
	b.Checkpoint = append([]byte(nil), rest[i+2:]...)
	blk, err := ParseRecord([]byte(lines[0]))
	if err != nil {
		return b, fmt.Errorf("%w: record: %v", ErrBadBundle, err)
	}
	blk.Hash = sha256.Sum256([]byte(lines[0]))
	b.Block = blk
	if len(lines)-1 > maxProof {
		return b, fmt.Errorf("%w: %d proof hashes, at most %d", ErrBadBundle, len(lines)-1, maxProof)
	}
	for n, l := range lines[1:] {
		raw, err := strictBase64.DecodeString(l)
		if err != nil || len(raw) != tlog.HashSize {
			return b, fmt.Errorf("%w: proof hash %d is not %d bytes in base64", ErrBadBundle, n+1, tlog.HashSize)
		}
		b.Proof = append(b.Proof, Hash(raw))
	}
	if len(b.Checkpoint) == 0 {
		return b, fmt.Errorf("%w: no checkpoint", ErrBadBundle)
	}
	if !bytes.Equal(b.Bytes(), data) {
		return b, fmt.Errorf("%w: not in canonical form", ErrBadBundle)
	}
	return b, nil
}

// Prove returns a proof bundle for the block at height, against the newest
// stored checkpoint that covers it (ErrNoCheckpoint when none does: sign
// one first; ErrOutOfRange beyond the head). It proves against the size
// and root the checkpoint's note signs, and checks the proof before
// returning it: a block that is not the one the checkpoint signs gives a
// *MismatchError instead.
func (s *Store) Prove(ctx context.Context, height uint64) (Bundle, error) {
	var b Bundle
	err := s.readTx(ctx, func(tx *sql.Tx) error {
		head, err := scanHead(tx.StmtContext(ctx, s.head).QueryRowContext(ctx))
		if err != nil {
			return err
		}
		if height > head.Height {
			return fmt.Errorf("%w: height %d, the chain holds 0..%d", ErrOutOfRange, height, head.Height)
		}
		row, err := s.latestCheckpoint(ctx, tx, height)
		if err != nil {
			return err
		}
		// The bundle ships the note: prove against what it signs, not
		// against the row's columns, which nothing signs.
		c, err := ParseCheckpoint(noteText([]byte(row.Note)))
		if err != nil {
			return fmt.Errorf("stored checkpoint of size %d: its note: %w", row.Size, err)
		}
		if c.Size <= height {
			return fmt.Errorf("stored checkpoint: %w: its row says it covers %d blocks, its signed note %d, which do not include height %d",
				ErrBadCheckpoint, row.Size, c.Size, height)
		}
		c.Note = row.Note
		blk, err := scanBlock(tx.QueryRowContext(ctx, `SELECT `+blockColumns+` FROM blocks WHERE height = ?`, int64(height)))
		if errors.Is(err, sql.ErrNoRows) {
			return &MismatchError{Failure: Failure{Height: height, Reason: ReasonMissingHeight,
				Detail: fmt.Sprintf("no block at height %d, which checkpoint %d covers", height, c.Size)}}
		}
		if err != nil {
			return fmt.Errorf("block %d: %w", height, err)
		}
		r := s.txReader(ctx, tx)
		proof, err := tlog.ProveRecord(int64(c.Size), int64(height), r)
		if err != nil {
			f, err := treeFailure(err)
			if f != nil {
				return &MismatchError{Failure: *f}
			}
			return fmt.Errorf("merkle tree: %w", err)
		}
		rec := blk.Record()
		leaf := tlog.RecordHash(rec)
		if err := tlog.CheckRecord(proof, int64(c.Size), tlog.Hash(c.Root), int64(height), leaf); err != nil {
			return &MismatchError{Failure: s.whyNotIncluded(ctx, r, blk, leaf, c)}
		}
		b.Block, b.Checkpoint = blk, []byte(c.Note)
		b.Proof = make([]Hash, len(proof))
		for i := range proof {
			b.Proof[i] = Hash(proof[i])
		}
		return nil
	})
	if err != nil {
		return Bundle{}, fmt.Errorf("chain %s: prove %d: %w", s.path, height, err)
	}
	return b, nil
}

// whyNotIncluded names the reason a block's inclusion proof failed: the
// block itself, the tree's leaf for it, or the tree above.
func (s *Store) whyNotIncluded(ctx context.Context, r tlog.HashReader, blk Block, leaf tlog.Hash, c Checkpoint) Failure {
	h := blk.Height
	if sha256.Sum256(blk.Record()) != blk.Hash {
		return Failure{Height: h, Reason: ReasonHashMismatch, Detail: fmt.Sprintf("block %d was altered: its record does not hash to its stored hash", h)}
	}
	stored, err := r.ReadHashes([]int64{tlog.StoredHashIndex(0, int64(h))})
	if err != nil || stored[0] != leaf {
		return Failure{Height: h, Reason: ReasonTreeMismatch, Detail: fmt.Sprintf("block %d is not the block the tree recorded at its height: it was altered and rehashed, or inserted", h)}
	}
	if root, err := tlog.TreeHash(int64(c.Size), r); err == nil && Hash(root) != c.Root {
		return Failure{Height: lastHeight(c.Size), Reason: ReasonCheckpointMismatch,
			Detail: fmt.Sprintf("the stored tree does not have the root checkpoint %d signs: blocks it covers were rewritten", c.Size)}
	}
	return Failure{Height: h, Reason: ReasonTreeMismatch,
		Detail: fmt.Sprintf("a stored tree hash on the path from block %d to the checkpoint's root is damaged", h)}
}

// ProofResult is the outcome of VerifyBundle and the JSON contract of
// `chain verify-proof`.
type ProofResult struct {
	OK         bool        `json:"ok"`
	Block      *Block      `json:"block,omitempty"`
	Checkpoint *Checkpoint `json:"checkpoint,omitempty"`
	Failure    *Failure    `json:"failure,omitempty"`
}

// VerifyBundle checks a proof bundle without the database: the checkpoint
// is signed by v's key (and, unless origin is empty, names origin), and
// the inclusion proof leads from the block's record to the checkpoint's
// root (tlog.CheckRecord). Its error is a *MismatchError when the bundle
// does not check out.
func VerifyBundle(data []byte, v note.Verifier, origin string) (ProofResult, error) {
	var res ProofResult
	fail := func(f Failure) (ProofResult, error) {
		res.Failure = &f
		return res, &MismatchError{Failure: f}
	}
	b, err := ParseBundle(data)
	if err != nil {
		return fail(Failure{Reason: ReasonBadBundle, Detail: err.Error()})
	}
	c, f := openCheckpoint(b.Checkpoint, v, origin)
	if f != nil {
		return fail(*f)
	}
	c.Note = ""
	res.Block, res.Checkpoint = &b.Block, &c
	h := b.Block.Height
	if h >= c.Size {
		return fail(Failure{Height: h, Reason: ReasonBadProof, Detail: fmt.Sprintf("the checkpoint signs %d blocks, which do not include height %d", c.Size, h)})
	}
	proof := make(tlog.RecordProof, len(b.Proof))
	for i := range b.Proof {
		proof[i] = tlog.Hash(b.Proof[i])
	}
	if err := tlog.CheckRecord(proof, int64(c.Size), tlog.Hash(c.Root), int64(h), tlog.RecordHash(b.Block.Record())); err != nil {
		return fail(Failure{Height: h, Reason: ReasonBadProof, Detail: fmt.Sprintf("the proof does not lead from block %d to the checkpoint's root: %v", h, err)})
	}
	res.OK = true
	return res, nil
}
