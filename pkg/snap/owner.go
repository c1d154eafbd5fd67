package snap

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ghostbridge/ghostbridge/pkg/chain"
)

// MarkerName is the file in a snapshot directory that binds it to one
// chain: it holds the chain id (chain.Store.ChainID). Two chains sharing a
// directory would each take the other's snapshots for strays.
const MarkerName = ".ghostbridge-chain"

// dirOwner returns the chain id in dir's marker, or "" when there is none.
func dirOwner(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, MarkerName))
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", invalid("snapshot directory %s: chain marker: %v", dir, err)
	}
	id := strings.TrimSpace(string(b))
	if id == "" || strings.ContainsAny(id, "\n\r") {
		return "", invalid("snapshot directory %s: chain marker %s is malformed; want one chain id", dir, MarkerName)
	}
	return id, nil
}

// checkOwner fails with ErrInvalidConfig when dir belongs to a chain other
// than id.
func checkOwner(dir, id string) error {
	owner, err := dirOwner(dir)
	if err != nil {
		return err
	}
	if owner != "" && owner != id {
		return invalid("snapshot directory %s belongs to chain %s, this database is chain %s", dir, owner, id)
	}
	return nil
}

// claimDir writes dir's marker (0600) when it has none.
func claimDir(dir, id string) (err error) {
	path := filepath.Join(dir, MarkerName)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return checkOwner(dir, id)
	}
	if err != nil {
		return fmt.Errorf("snapshot directory %s: chain marker: %w", dir, err)
	}
	defer func() { err = errors.Join(err, f.Close()) }()
	if _, err := f.WriteString(id + "\n"); err != nil {
		return fmt.Errorf("chain marker %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("chain marker %s: %w", path, err)
	}
	return nil
}

// ValidateChain is Validate plus the check that cfg.Dir is not bound to a
// chain other than st's (see MarkerName). Run and Prune check it too.
func ValidateChain(ctx context.Context, fs Snapshotter, cfg Config, st *chain.Store) error {
	if err := Validate(ctx, fs, cfg); err != nil {
		return err
	}
	if st == nil {
		return nil
	}
	id, err := st.ChainID(ctx)
	if err != nil {
		return err
	}
	return checkOwner(filepath.Clean(cfg.Dir), id)
}
