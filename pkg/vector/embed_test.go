package vector

import (
	"encoding/json"
	"errors"
	"flag"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ghostbridge/ghostbridge/pkg/chain"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/vector")

func goldenBlock() chain.Block {
	at := time.Date(2026, 3, 14, 9, 26, 53, 589793238, time.UTC)
	payload, _ := json.Marshal(chain.SnapshotPayload{
		Source: "home", SourcePath: "/home", Snapshot: "/.snapshots/ghostbridge/home/20260314T092653.589Z",
		UUID: "0b7c2f7e-1d5a-4f43-9d0e-3a8f2b6c9e11", ParentUUID: "5e0c8a41-9b7d-4c2e-8f6a-1d3b5c7e9f20",
		Generation: 48213, OTime: at.Add(-3 * time.Millisecond),
	})
	return chain.Block{Height: 31415, Time: at, Kind: chain.KindSnapshotCreated, Payload: payload}
}

// TestEmbedGolden pins the vector of one block: the same event must give
// the same vector on every machine and every version, or a collection
// synced by one version would not be searchable by the next.
func TestEmbedGolden(t *testing.T) {
	e, err := NewMetaEmbedder(DefaultDim)
	if err != nil {
		t.Fatal(err)
	}
	got, err := e.Block(goldenBlock())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("..", "..", "testdata", "vector", "golden-vector-64.json")
	if *update {
		b, _ := json.MarshalIndent(got, "", " ")
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./pkg/vector -run Golden -update)", err)
	}
	var want []float32
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("dimension %d, golden %d", len(got), len(want))
	}
	for i := range want {
		// One float32 ulp of slack: architectures that fuse multiply-add
		// may round the last bit of a float64 intermediate differently.
		if math.Abs(float64(got[i]-want[i])) > 1e-7 {
			t.Fatalf("component %d = %v, golden %v: the vector layout changed; existing collections need vector reindex", i, got[i], want[i])
		}
	}
}

func TestEmbedProperties(t *testing.T) {
	e, _ := NewMetaEmbedder(DefaultDim)
	b := goldenBlock()
	v, _ := e.Block(b)
	var n float64
	for _, x := range v {
		n += float64(x) * float64(x)
	}
	if math.Abs(n-1) > 1e-5 {
		t.Errorf("norm² %v, want 1", n)
	}
	// Hash and height are not features: two identical events at different
	// heights are the same point in space.
	b2 := b
	b2.Height, b2.Hash = 7, chain.Hash{1}
	v2, _ := e.Block(b2)
	if cos(v, v2) < 0.999999 {
		t.Errorf("height changed the vector")
	}
	// Another source moves it away.
	var p chain.SnapshotPayload
	_ = json.Unmarshal(b.Payload, &p)
	p.Source, p.SourcePath = "root", "/"
	b3 := b
	b3.Payload, _ = json.Marshal(p)
	v3, _ := e.Block(b3)
	if cos(v, v3) > 0.9 {
		t.Errorf("other source too close: %v", cos(v, v3))
	}
	for _, dim := range []int{0, 8, 15} {
		if _, err := NewMetaEmbedder(dim); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("dimension %d: %v", dim, err)
		}
	}
	if _, err := e.Text("  !! "); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("empty text: %v", err)
	}
	if _, err := e.Block(chain.Block{Kind: chain.KindSnapshotCreated, Payload: []byte(`{`)}); err == nil {
		t.Error("bad payload accepted")
	}
}

func cos(a, b []float32) float64 {
	var s float64
	for i := range a {
		s += float64(a[i]) * float64(b[i])
	}
	return s
}
