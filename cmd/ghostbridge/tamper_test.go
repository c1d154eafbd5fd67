package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/ghostbridge/ghostbridge/internal/testenv"
)

// sqlite3 runs the sqlite3 shell on db with one SQL script, as an outsider
// editing the file would, and returns its output.
func sqlite3(t *testing.T, db, script string) string {
	t.Helper()
	return testenv.SQLite3(t, db, script)
}

// TestChainVerifyTamper: each way of editing the chain file behind the
// program's back is caught by `chain verify` with exit 3 and the exact
// height, in text and in JSON. The fixture holds heights 0..6.
func TestChainVerifyTamper(t *testing.T) {
	cases := []struct {
		name   string
		script string
		height uint64
	}{
		{
			name:   "one payload byte",
			script: `UPDATE blocks SET payload = replace(payload, '"root"', '"rOot"') WHERE height = 4; SELECT 'changes', changes();`,
			height: 4,
		},
		{
			name:   "row deleted",
			script: `DELETE FROM blocks WHERE height = 3; SELECT 'changes', changes();`,
			height: 3,
		},
		{
			name: "two rows swapped",
			script: `BEGIN;
UPDATE blocks SET height = 1000000 WHERE height = 2;
UPDATE blocks SET height = 2 WHERE height = 3;
UPDATE blocks SET height = 3 WHERE height = 1000000;
COMMIT;
SELECT 'changes', changes();`,
			height: 2,
		},
		{
			name:   "hash changed",
			script: `UPDATE blocks SET hash = zeroblob(32) WHERE height = 5; SELECT 'changes', changes();`,
			height: 5,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			db, _ := fixtureChain(t)
			// Each script ends by reporting the rows its last statement
			// changed, so an edit that matched nothing fails here.
			if out := sqlite3(t, db, c.script); out != "changes|1" {
				t.Fatalf("tamper script changed nothing: %q", out)
			}

			r := runCLI(t, nil, "--db", db, "chain", "verify")
			want := fmt.Sprintf("MISMATCH: height %d: ", c.height)
			if r.code != exitCheckFailed || !strings.HasPrefix(r.stdout, want) {
				t.Errorf("chain verify: exit %d, stdout %q, stderr %q; want exit 3 and stdout starting %q", r.code, r.stdout, r.stderr, want)
			}
			if !strings.Contains(r.stderr, fmt.Sprintf("%d", c.height)) {
				t.Errorf("chain verify: stderr %q does not name height %d", r.stderr, c.height)
			}

			r = runCLI(t, nil, "--db", db, "chain", "verify", "--format", "json")
			var res struct {
				Schema  int  `json:"schema"`
				OK      bool `json:"ok"`
				Failure *struct {
					Height uint64 `json:"height"`
					Reason string `json:"reason"`
				} `json:"failure"`
			}
			if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
				t.Fatalf("chain verify --format json: stdout %q: %v", r.stdout, err)
			}
			if r.code != exitCheckFailed || res.OK || res.Failure == nil || res.Failure.Height != c.height || res.Failure.Reason == "" {
				t.Errorf("chain verify --format json: exit %d, %s; want exit 3, ok false and failure.height %d with a reason", r.code, r.stdout, c.height)
			}
		})
	}
}
