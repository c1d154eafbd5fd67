package vector

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ghostbridge/ghostbridge/pkg/vector/qdranttest"
)

// TestReindexSuffixLen: the suffix reindex appends has the same width at
// any time and random value, and that width is ReindexSuffixLen.
func TestReindexSuffixLen(t *testing.T) {
	for _, at := range []time.Time{time.Unix(0, 0), time.Date(2031, 12, 31, 23, 59, 59, 999999999, time.UTC), time.Date(9999, 1, 1, 0, 0, 0, 1, time.FixedZone("x", 3600))} {
		for _, r := range []uint32{0, 1, 0xffff, 0xffffffff} {
			if n := len(targetName("", at, r)); n != ReindexSuffixLen {
				t.Fatalf("suffix %q is %d long, ReindexSuffixLen %d", targetName("", at, r), n, ReindexSuffixLen)
			}
		}
	}
}

func TestCollectionNameValidated(t *testing.T) {
	for _, tc := range []struct {
		name, want string
	}{
		{"events", ""},
		{strings.Repeat("é", MaxCollection), ""}, // Qdrant counts characters
		{"", "collection is empty"},
		{strings.Repeat("a", MaxCollection+1), "at most 223 allowed (Qdrant's limit is 255 and reindex appends 32)"},
		{"a/b", "which Qdrant forbids"},
		{"a:b", "which Qdrant forbids"},
	} {
		err := Config{Collection: tc.name}.Validate()
		if tc.want == "" {
			if err != nil {
				t.Errorf("%q: %v", tc.name, err)
			}
			continue
		}
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestLongestNameReindexes: a collection name of the longest allowed length
// syncs and reindexes against the stand-in, which enforces Qdrant's limit
// on names: the collection reindex makes is exactly at the limit, and one
// character more, as a longer configured name would give, is refused.
func TestLongestNameReindexes(t *testing.T) {
	e := newEnv(t, 30, qdranttest.Options{})
	e.cfg.Collection = strings.Repeat("c", MaxCollection)
	if _, err := Sync(t.Context(), e.deps, e.cfg); err != nil {
		t.Fatal(err)
	}
	res, err := Reindex(t.Context(), e.deps, e.cfg, ReindexOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Target) != MaxQdrantName {
		t.Fatalf("target %q is %d long, want exactly %d", res.Target, len(res.Target), MaxQdrantName)
	}
	e.checkExactlyOnce(t)

	tooLong := targetName(strings.Repeat("c", MaxCollection+1), time.Now(), 1)
	err = e.client.CreateCollection(t.Context(), &qdrant.CreateCollection{
		CollectionName: tooLong,
		VectorsConfig:  qdrant.NewVectorsConfig(&qdrant.VectorParams{Size: 4, Distance: qdrant.Distance_Cosine}),
	})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "must be at most 255") {
		t.Fatalf("creating a %d-character collection: %v", len(tooLong), err)
	}
}
