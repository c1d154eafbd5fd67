package chain

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Export writes blocks from..to (inclusive; to 0 means the head) to w as
// JSON lines, one Block object per line in ascending height, and returns
// how many it wrote. Payloads are written byte for byte as stored (no
// HTML escaping), so each line holds what recomputing the block's hash
// needs. It reads one consistent view of the chain.
func (s *Store) Export(ctx context.Context, from, to uint64, w io.Writer) (uint64, error) {
	var n uint64
	err := s.readTx(ctx, func(tx *sql.Tx) error {
		head, err := scanHead(tx.StmtContext(ctx, s.head).QueryRowContext(ctx))
		if err != nil {
			return err
		}
		if to == 0 {
			to = head.Height
		}
		if to > head.Height || from > to {
			return fmt.Errorf("%w: asked for heights %d..%d, the chain holds 0..%d", ErrOutOfRange, from, to, head.Height)
		}
		rows, err := tx.QueryContext(ctx, `SELECT `+blockColumns+` FROM blocks WHERE height BETWEEN ? AND ? ORDER BY height`, int64(from), int64(to))
		if err != nil {
			return err
		}
		defer rows.Close()
		bw := bufio.NewWriterSize(w, 1<<16)
		enc := json.NewEncoder(bw)
		enc.SetEscapeHTML(false)
		for rows.Next() {
			b, err := scanBlock(rows)
			if err != nil {
				return err
			}
			if err := enc.Encode(&b); err != nil {
				return fmt.Errorf("block %d: %w", b.Height, err)
			}
			n++
		}
		return errors.Join(rows.Err(), bw.Flush())
	})
	if err != nil {
		return n, fmt.Errorf("chain %s: export: %w", s.path, err)
	}
	return n, nil
}
