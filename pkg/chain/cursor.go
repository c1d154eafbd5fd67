package chain

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
)

// Cursor returns the height stored under name, and false when no cursor of
// that name was ever set. Consumers (the vector index) store the last
// height they have had acknowledged, so a restart resumes after it.
func (s *Store) Cursor(ctx context.Context, name string) (uint64, bool, error) {
	var h int64
	err := s.db.QueryRowContext(ctx, `SELECT height FROM cursors WHERE name = ?`, name).Scan(&h)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return 0, false, nil
	case err != nil:
		return 0, false, fmt.Errorf("chain database %s: cursor %q: %w", s.path, name, err)
	}
	return uint64(h), true, nil
}

// SetCursor stores height under name, replacing what was there, durably
// (synchronous=FULL) before it returns.
func (s *Store) SetCursor(ctx context.Context, name string, height uint64) error {
	if height > math.MaxInt64 {
		return fmt.Errorf("chain database %s: cursor %q: height %d out of range", s.path, name, height)
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO cursors (name, height) VALUES (?, ?)
		ON CONFLICT (name) DO UPDATE SET height = excluded.height`, name, int64(height))
	if err != nil {
		return fmt.Errorf("chain database %s: cursor %q: %w", s.path, name, err)
	}
	return nil
}

// DeleteCursor removes the cursor name, so Cursor reports it never set.
// Removing a cursor that does not exist is not an error.
func (s *Store) DeleteCursor(ctx context.Context, name string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM cursors WHERE name = ?`, name); err != nil {
		return fmt.Errorf("chain database %s: cursor %q: %w", s.path, name, err)
	}
	return nil
}

// NamedCursor is one stored cursor.
type NamedCursor struct {
	Name   string `json:"name"`
	Height uint64 `json:"height"`
}

// Cursors lists the cursors whose name starts with prefix, by name.
func (s *Store) Cursors(ctx context.Context, prefix string) ([]NamedCursor, error) {
	// substr rather than LIKE: a prefix may hold % or _.
	rows, err := s.db.QueryContext(ctx, `SELECT name, height FROM cursors
		WHERE substr(name, 1, length(?1)) = ?1 ORDER BY name`, prefix)
	if err != nil {
		return nil, fmt.Errorf("chain database %s: cursors %q: %w", s.path, prefix, err)
	}
	defer rows.Close()
	var out []NamedCursor
	for rows.Next() {
		var c NamedCursor
		var h int64
		if err := rows.Scan(&c.Name, &h); err != nil {
			return nil, fmt.Errorf("chain database %s: cursors %q: %w", s.path, prefix, err)
		}
		c.Height = uint64(h)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("chain database %s: cursors %q: %w", s.path, prefix, err)
	}
	return out, nil
}
