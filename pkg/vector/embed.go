package vector

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"strings"
	"time"

	"github.com/ghostbridge/ghostbridge/pkg/chain"
)

// Embedder turns chain events, and free text meant to find them, into
// vectors of a fixed dimension. MetaEmbedder is the built-in one; the
// interface leaves room for a real embedding model.
type Embedder interface {
	// Dim is the length of every vector the embedder returns.
	Dim() int
	// Block returns the vector of one chain block.
	Block(b chain.Block) ([]float32, error)
	// Text returns a query vector for words an operator typed.
	Text(s string) ([]float32, error)
}

// MinDim is the smallest dimension MetaEmbedder accepts: its fixed
// features take 8 slots and the hashed tokens need room to spread.
const MinDim = 16

// DefaultDim is the vector dimension used when none is configured.
const DefaultDim = 64

// numericSlots is the number of fixed numeric features at the start of a
// MetaEmbedder vector; the rest holds hashed tokens.
const numericSlots = 8

// Token weights: what an event is and where it happened dominate; path
// segments and reasons refine.
const (
	weightKind   = 1.0
	weightFamily = 0.5
	weightSource = 1.0
	weightPath   = 0.35
	weightReason = 0.5
)

// MetaEmbedder makes deterministic vectors from an event's metadata: the
// same block gives the same vector on every machine and version. The layout
// (documented in the README, pinned by a golden test) for dimension D:
//
//	0,1  sin, cos of the UTC time of day (2π·seconds/86400)
//	2,3  sin, cos of the UTC day of week (2π·(weekday+dayfraction)/7, Sunday 0)
//	4    log2(1+generation)/64                      (snapshot.*)
//	5    log2(1+missed ticks)/64                    (ticks.missed)
//	6    log2(1+missed span in seconds)/32          (ticks.missed)
//	7    log2(1+|block time − snapshot otime| ms)/32 (snapshot.*: recording delay)
//	8..D-1  signed feature hashing of tokens: FNV-1a 64 of the token picks
//	     slot 8 + h mod (D−8) and the sign (top bit set: −1); tokens are
//	     "kind=K" (1.0), "family=F" (0.5, the part of K before the dot),
//	     "source=S" (1.0), "path=SEG" (0.35 each, segments of the source
//	     path and of the snapshot's directory), "reason=R" (0.5).
//
// The whole vector is then L2-normalised. Features depend on the block
// alone, never on its neighbours, so a block's vector does not change with
// the order or batching of a sync, and `search --like` can recompute it.
type MetaEmbedder struct {
	dim int
}

// ErrInvalidConfig marks configuration the package refuses; the CLI maps
// it to the usage exit code.
var ErrInvalidConfig = errors.New("invalid vector configuration")

// NewMetaEmbedder returns a MetaEmbedder of dimension dim (>= MinDim).
func NewMetaEmbedder(dim int) (*MetaEmbedder, error) {
	if dim < MinDim || dim > 65536 {
		return nil, fmt.Errorf("%w: dimension %d (allowed %d..65536)", ErrInvalidConfig, dim, MinDim)
	}
	return &MetaEmbedder{dim: dim}, nil
}

// Dim implements Embedder.
func (e *MetaEmbedder) Dim() int { return e.dim }

// Block implements Embedder.
func (e *MetaEmbedder) Block(b chain.Block) ([]float32, error) {
	v := make([]float64, e.dim)
	t := b.Time.UTC()
	day := float64(t.Hour()*3600+t.Minute()*60+t.Second())/86400 + float64(t.Nanosecond())/86400e9
	v[0], v[1] = math.Sin(2*math.Pi*day), math.Cos(2*math.Pi*day)
	week := (float64(t.Weekday()) + day) / 7
	v[2], v[3] = math.Sin(2*math.Pi*week), math.Cos(2*math.Pi*week)

	e.token(v, "kind="+string(b.Kind), weightKind)
	family, _, _ := strings.Cut(string(b.Kind), ".")
	e.token(v, "family="+family, weightFamily)

	switch b.Kind {
	case chain.KindSnapshotCreated, chain.KindSnapshotDeleted, chain.KindSnapshotAdopted, chain.KindSnapshotVanished:
		var p chain.SnapshotPayload
		if err := json.Unmarshal(b.Payload, &p); err != nil {
			return nil, fmt.Errorf("block %d: payload: %w", b.Height, err)
		}
		v[4] = math.Log2(1+float64(p.Generation)) / 64
		if !p.OTime.IsZero() {
			lag := math.Abs(float64(b.Time.Sub(p.OTime).Milliseconds()))
			v[7] = math.Log2(1+lag) / 32
		}
		if p.Source != "" {
			e.token(v, "source="+p.Source, weightSource)
		}
		for _, seg := range pathSegments(p.SourcePath) {
			e.token(v, "path="+seg, weightPath)
		}
		if i := strings.LastIndexByte(p.Snapshot, '/'); i > 0 {
			for _, seg := range pathSegments(p.Snapshot[:i]) {
				e.token(v, "path="+seg, weightPath)
			}
		}
		if p.Reason != "" {
			e.token(v, "reason="+p.Reason, weightReason)
		}
	case chain.KindTicksMissed:
		var p chain.TicksMissedPayload
		if err := json.Unmarshal(b.Payload, &p); err != nil {
			return nil, fmt.Errorf("block %d: payload: %w", b.Height, err)
		}
		v[5] = math.Log2(1+float64(p.Count)) / 64
		if span := p.To.Sub(p.From).Seconds(); span > 0 {
			v[6] = math.Log2(1+span) / 32
		}
	}
	return normalise(v), nil
}

// Text implements Embedder: each word counts as every token class it could
// be (kind, family, source, path segment, reason), so a query such as
// "snapshot.deleted home" lands near deleted snapshots of home. Time
// features stay zero: free text says nothing about the time of day.
func (e *MetaEmbedder) Text(s string) ([]float32, error) {
	v := make([]float64, e.dim)
	words := strings.FieldsFunc(strings.ToLower(s), func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || strings.ContainsRune("._@-", r))
	})
	if len(words) == 0 {
		return nil, fmt.Errorf("%w: search text %q has no words", ErrInvalidConfig, s)
	}
	for _, w := range words {
		if strings.Contains(w, ".") {
			e.token(v, "kind="+w, weightKind)
		}
		e.token(v, "family="+w, weightFamily)
		e.token(v, "source="+w, weightSource)
		e.token(v, "path="+w, weightPath)
		e.token(v, "reason="+w, weightReason)
	}
	return normalise(v), nil
}

func (e *MetaEmbedder) token(v []float64, tok string, w float64) {
	h := fnv.New64a()
	h.Write([]byte(tok))
	x := h.Sum64()
	slot := numericSlots + int(x%uint64(e.dim-numericSlots))
	if x>>63 == 1 {
		w = -w
	}
	v[slot] += w
}

func pathSegments(p string) []string {
	return strings.FieldsFunc(p, func(r rune) bool { return r == '/' })
}

func normalise(v []float64) []float32 {
	var sum float64
	for _, x := range v {
		sum += x * x
	}
	out := make([]float32, len(v))
	if sum == 0 {
		return out
	}
	n := math.Sqrt(sum)
	for i, x := range v {
		out[i] = float32(x / n)
	}
	return out
}

// timeOf formats a time as payload and filters expect it (RFC 3339, UTC).
func timeOf(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
