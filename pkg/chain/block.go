package chain

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"
)

// RecordPrefix starts every block's canonical encoding. It names the
// encoding's version: a new encoding would get a new prefix, never a change
// to this one.
const RecordPrefix = "ghostbridge.block.v1"

// Hash is a SHA-256 digest. It marshals as lowercase hex.
type Hash [32]byte

// String returns the hash as lowercase hex.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// IsZero reports whether every byte of h is zero (the genesis block's Prev).
func (h Hash) IsZero() bool { return h == Hash{} }

// MarshalText encodes h as lowercase hex.
func (h Hash) MarshalText() ([]byte, error) { return hex.AppendEncode(nil, h[:]), nil }

// UnmarshalText decodes 64 hex digits into h.
func (h *Hash) UnmarshalText(b []byte) error {
	p, err := ParseHash(string(b))
	if err != nil {
		return err
	}
	*h = p
	return nil
}

// ParseHash decodes 64 hex digits.
func ParseHash(s string) (Hash, error) {
	var h Hash
	if len(s) != 2*len(h) {
		return h, fmt.Errorf("hash %q: want %d hex digits, have %d", s, 2*len(h), len(s))
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, fmt.Errorf("hash %q: %w", s, err)
	}
	return h, nil
}

// Kind names what a block records.
type Kind string

// The kinds of block the chain knows. Verification rejects any other kind.
const (
	KindGenesis          Kind = "chain.genesis"
	KindSnapshotCreated  Kind = "snapshot.created"
	KindSnapshotDeleted  Kind = "snapshot.deleted"
	KindSnapshotAdopted  Kind = "snapshot.adopted"
	KindSnapshotVanished Kind = "snapshot.vanished"
	KindTicksMissed      Kind = "ticks.missed"
)

// Kinds lists every known kind, in a stable order.
var Kinds = []Kind{KindGenesis, KindSnapshotCreated, KindSnapshotDeleted, KindSnapshotAdopted, KindSnapshotVanished, KindTicksMissed}

// Known reports whether k is one of Kinds.
func (k Kind) Known() bool {
	switch k {
	case KindGenesis, KindSnapshotCreated, KindSnapshotDeleted, KindSnapshotAdopted, KindSnapshotVanished, KindTicksMissed:
		return true
	}
	return false
}

// Block is one link of the chain. Its JSON form is part of the CLI contract.
type Block struct {
	Height  uint64          `json:"height"`
	Time    time.Time       `json:"time"`
	Kind    Kind            `json:"kind"`
	Payload json.RawMessage `json:"payload"`
	Prev    Hash            `json:"prev"`
	Hash    Hash            `json:"hash"`
}

// GenesisPayload is the payload of the chain.genesis block at height 0.
type GenesisPayload struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	ChainID string `json:"chain_id"`
}

// SnapshotPayload is the payload of snapshot.* blocks.
type SnapshotPayload struct {
	Source     string    `json:"source"`
	SourcePath string    `json:"source_path"`
	Snapshot   string    `json:"snapshot"`
	UUID       string    `json:"uuid"`
	ParentUUID string    `json:"parent_uuid"`
	Generation uint64    `json:"generation"`
	OTime      time.Time `json:"otime"`
	Reason     string    `json:"reason,omitempty"`
}

// TicksMissedPayload is the payload of a ticks.missed block: ticks that an
// overrunning tick skipped, so the timeline stays honest.
type TicksMissedPayload struct {
	Count uint64    `json:"count"`
	From  time.Time `json:"from"`
	To    time.Time `json:"to"`
}

// AppendRecord appends the block's canonical encoding to dst: the bytes
// whose SHA-256 is the block's hash. It is one line of text,
//
//	ghostbridge.block.v1 HEIGHT TIME_NS KIND PREV_HEX PAYLOAD
//
// fields separated by one space, HEIGHT and TIME_NS (nanoseconds since the
// Unix epoch, UTC) in decimal, PREV_HEX the previous block's hash in 64
// lowercase hex digits, PAYLOAD the stored JSON bytes exactly, no newline.
func (b *Block) AppendRecord(dst []byte) []byte {
	return appendRecord(dst, b.Height, b.Time.UnixNano(), string(b.Kind), b.Prev[:], string(b.Payload))
}

// Record returns the block's canonical encoding.
func (b *Block) Record() []byte { return b.AppendRecord(nil) }

// appendRecord takes kind and payload as strings (a Block's) or as bytes
// (a verifier's view of the stored columns), without a conversion.
func appendRecord[S string | []byte](dst []byte, height uint64, timeNS int64, kind S, prev []byte, payload S) []byte {
	dst = append(dst, RecordPrefix...)
	dst = append(dst, ' ')
	dst = strconv.AppendUint(dst, height, 10)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, timeNS, 10)
	dst = append(dst, ' ')
	dst = append(dst, kind...)
	dst = append(dst, ' ')
	dst = hex.AppendEncode(dst, prev)
	dst = append(dst, ' ')
	return append(dst, payload...)
}

// ErrBadRecord marks bytes that are not a canonical block encoding.
var ErrBadRecord = fmt.Errorf("bad block record")

// ParseRecord decodes a canonical block encoding (without its hash, which
// the caller computes). Only canonical bytes parse: AppendRecord of the
// result reproduces rec exactly.
func ParseRecord(rec []byte) (Block, error) {
	var b Block
	fields := bytes.SplitN(rec, []byte(" "), 6)
	if len(fields) != 6 {
		return b, fmt.Errorf("%w: want 6 space-separated fields, have %d", ErrBadRecord, len(fields))
	}
	if string(fields[0]) != RecordPrefix {
		return b, fmt.Errorf("%w: prefix %q, want %q", ErrBadRecord, fields[0], RecordPrefix)
	}
	h, err := parseCanonicalUint(fields[1])
	if err != nil {
		return b, fmt.Errorf("%w: height: %v", ErrBadRecord, err)
	}
	t, err := parseCanonicalInt(fields[2])
	if err != nil {
		return b, fmt.Errorf("%w: time: %v", ErrBadRecord, err)
	}
	kind := Kind(fields[3])
	if !kind.Known() {
		return b, fmt.Errorf("%w: unknown kind %q", ErrBadRecord, kind)
	}
	prev := fields[4]
	if len(prev) != 64 || !isLowerHex(prev) {
		return b, fmt.Errorf("%w: previous hash %q is not 64 lowercase hex digits", ErrBadRecord, prev)
	}
	if _, err := hex.Decode(b.Prev[:], prev); err != nil {
		return b, fmt.Errorf("%w: previous hash: %v", ErrBadRecord, err)
	}
	if err := checkPayload(fields[5]); err != nil {
		return b, fmt.Errorf("%w: payload: %v", ErrBadRecord, err)
	}
	b.Height, b.Time, b.Kind = h, time.Unix(0, t).UTC(), kind
	b.Payload = append(json.RawMessage(nil), fields[5]...)
	return b, nil
}

// checkPayload accepts a compact JSON object on one line: what Append stores.
func checkPayload(p []byte) error {
	if len(p) == 0 || p[0] != '{' {
		return fmt.Errorf("not a JSON object")
	}
	if !utf8.Valid(p) || bytes.ContainsAny(p, "\n\r") {
		return fmt.Errorf("not one line of UTF-8")
	}
	if !json.Valid(p) {
		return fmt.Errorf("invalid JSON")
	}
	var c bytes.Buffer
	if err := json.Compact(&c, p); err != nil || !bytes.Equal(c.Bytes(), p) {
		return fmt.Errorf("JSON is not compact")
	}
	return nil
}

func parseCanonicalUint(b []byte) (uint64, error) {
	if len(b) == 0 || (len(b) > 1 && b[0] == '0') {
		return 0, fmt.Errorf("%q is not a canonical decimal", b)
	}
	return strconv.ParseUint(string(b), 10, 64)
}

func parseCanonicalInt(b []byte) (int64, error) {
	digits := b
	if len(b) > 0 && b[0] == '-' {
		digits = b[1:]
		if string(digits) == "0" {
			return 0, fmt.Errorf("%q is not a canonical decimal", b)
		}
	}
	if len(digits) == 0 || (len(digits) > 1 && digits[0] == '0') || digits[0] == '+' {
		return 0, fmt.Errorf("%q is not a canonical decimal", b)
	}
	return strconv.ParseInt(string(b), 10, 64)
}

func isLowerHex(b []byte) bool {
	for _, c := range b {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Snapshot decodes the payload of a snapshot.* block.
func (b *Block) Snapshot() (SnapshotPayload, error) {
	var p SnapshotPayload
	switch b.Kind {
	case KindSnapshotCreated, KindSnapshotDeleted, KindSnapshotAdopted, KindSnapshotVanished:
	default:
		return p, fmt.Errorf("block %d: kind %s has no snapshot payload", b.Height, b.Kind)
	}
	if err := json.Unmarshal(b.Payload, &p); err != nil {
		return p, fmt.Errorf("block %d: payload: %w", b.Height, err)
	}
	return p, nil
}
