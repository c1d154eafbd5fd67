package vector

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"

	"github.com/qdrant/go-client/qdrant"

	"github.com/ghostbridge/ghostbridge/pkg/chain"
)

// Payload returns the Qdrant payload of a block: height, time (RFC 3339,
// UTC), kind, prev, hash, the stored payload bytes as "payload", and the
// payload's fields lifted to the top level (source, snapshot, uuid,
// generation, ...) so they can be filtered on.
func Payload(b chain.Block) (map[string]*qdrant.Value, error) {
	prev, _ := b.Prev.MarshalText()
	hash, _ := b.Hash.MarshalText()
	p := map[string]*qdrant.Value{
		"height":  qdrant.NewValueInt(clampInt(b.Height)),
		"time":    qdrant.NewValueString(timeOf(b.Time)),
		"kind":    qdrant.NewValueString(string(b.Kind)),
		"prev":    qdrant.NewValueString(string(prev)),
		"hash":    qdrant.NewValueString(string(hash)),
		"payload": qdrant.NewValueString(string(b.Payload)),
	}
	var fields map[string]any
	d := json.NewDecoder(bytes.NewReader(b.Payload))
	d.UseNumber()
	if err := d.Decode(&fields); err != nil {
		return nil, fmt.Errorf("block %d: payload: %w", b.Height, err)
	}
	for k, v := range fields {
		if _, taken := p[k]; taken {
			continue
		}
		val, err := value(v)
		if err != nil {
			return nil, fmt.Errorf("block %d: payload field %s: %w", b.Height, k, err)
		}
		p[k] = val
	}
	return p, nil
}

func value(v any) (*qdrant.Value, error) {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return qdrant.NewValueInt(i), nil
		}
		f, err := x.Float64()
		if err != nil {
			return nil, err
		}
		return qdrant.NewValueDouble(f), nil
	case map[string]any:
		m := map[string]*qdrant.Value{}
		for k, e := range x {
			ev, err := value(e)
			if err != nil {
				return nil, err
			}
			m[k] = ev
		}
		return qdrant.NewValueFromFields(m), nil
	case []any:
		l := make([]*qdrant.Value, 0, len(x))
		for _, e := range x {
			ev, err := value(e)
			if err != nil {
				return nil, err
			}
			l = append(l, ev)
		}
		return qdrant.NewValueFromList(l...), nil
	default:
		return qdrant.NewValue(v)
	}
}

func clampInt(u uint64) int64 {
	if u > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(u)
}
