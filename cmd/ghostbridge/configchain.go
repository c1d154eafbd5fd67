package main

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/ghostbridge/ghostbridge/pkg/chain"
)

// validateChain checks the [chain] table.
func (c Config) validateChain() []Problem {
	var ps []Problem
	for _, k := range []struct {
		key, val string
	}{{"chain.signing_key", c.Chain.SigningKey}, {"chain.verifier_key", c.Chain.VerifierKey}} {
		if looksLikeKey(k.val) {
			// The value is the key itself: never echo it.
			ps = append(ps, Problem{Key: k.key, Value: "(key text, not shown)", Want: wantFor(k.key)})
		} else if strings.ContainsAny(k.val, "\n\r") {
			ps = append(ps, Problem{Key: k.key, Value: showValue(k.val), Want: wantFor(k.key)})
		}
	}
	cf := c.Chain.CheckpointFile
	switch {
	case !filepath.IsAbs(cf) || strings.HasSuffix(cf, "/"):
		ps = append(ps, Problem{Key: "chain.checkpoint_file", Value: showValue(cf), Want: wantFor("chain.checkpoint_file")})
	case c.checkpointsUsed() && insideDir(cf, filepath.Dir(absPath(c.DB))):
		ps = append(ps, Problem{Key: "chain.checkpoint_file", Value: showValue(cf), Want: fmt.Sprintf(
			"a file outside the database's directory %s: replacing the database must not replace the evidence against it", filepath.Dir(absPath(c.DB)))})
	}
	if o := c.Chain.Origin; o != "" {
		// ParseCheckpoint applies the library's rules for an origin line.
		if _, err := chain.ParseCheckpoint(chain.FormatCheckpoint(o, 0, chain.Hash{})); err != nil {
			ps = append(ps, Problem{Key: "chain.origin", Value: showValue(o), Want: wantFor("chain.origin")})
		}
	}
	if c.Chain.CheckpointInterval < 0 {
		ps = append(ps, Problem{Key: "chain.checkpoint_interval", Value: showValue(c.Chain.CheckpointInterval), Want: wantFor("chain.checkpoint_interval")})
	}
	return ps
}

// checkpointsUsed reports whether the checkpoint file matters: a key is
// configured or the file was chosen. The default file is not held against
// a database that merely shares its parent directory.
func (c Config) checkpointsUsed() bool {
	return c.Chain.SigningKey != "" || c.Chain.VerifierKey != "" || c.Chain.CheckpointFile != defaultCheckpointFile
}

// keyText matches note's key text: "PRIVATE+KEY+..." or
// "<name>+<8 hex>+<base64>".
var keyText = regexp.MustCompile(`^(PRIVATE\+KEY\+|[^/\s+]+\+[0-9a-f]{8}\+[A-Za-z0-9+/]+=*$)`)

// looksLikeKey reports whether a value given for a key path is a key.
func looksLikeKey(s string) bool { return keyText.MatchString(strings.TrimSpace(s)) }

// absPath is path made absolute and clean, or path when the working
// directory is unknown.
func absPath(path string) string {
	if p, err := filepath.Abs(path); err == nil {
		return p
	}
	return filepath.Clean(path)
}

// insideDir reports whether path is dir itself or lies under it.
func insideDir(path, dir string) bool {
	rel, err := filepath.Rel(dir, absPath(path))
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}
