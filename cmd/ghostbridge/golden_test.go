package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ghostbridge/ghostbridge/pkg/chain"
)

// fixtureT0 is the first event of the fixture chain. It lies after any
// real clock so the genesis block (stamped with the real time) never
// clamps the fixture's times.
var fixtureT0 = time.Date(2099, 1, 2, 3, 4, 5, 0, time.UTC)

// fixtureChain writes a small real chain: snapshots of two sources, a
// missed tick and a retention deletion, at fixed times. It returns the
// database path and a scrubber for the values that differ between runs.
func fixtureChain(t *testing.T) (string, scrubber) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	db := filepath.Join(dir, "chain.db")
	st, err := chain.Open(ctx, db, chain.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := st.Close(); err != nil {
			t.Error(err)
		}
	}()
	snapAt := func(src, uuid string, at time.Time, gen uint64) chain.SnapshotPayload {
		return chain.SnapshotPayload{
			Source: src, SourcePath: map[string]string{"root": "/", "home": "/home"}[src],
			Snapshot:   "/.snapshots/ghostbridge/" + src + "/" + at.Format("20060102T150405.000Z"),
			UUID:       uuid,
			ParentUUID: map[string]string{"root": "a0000000-0000-4000-8000-000000000001", "home": "a0000000-0000-4000-8000-000000000002"}[src],
			Generation: gen, OTime: at,
		}
	}
	t0 := fixtureT0
	t3 := t0.Add(3 * time.Second)
	root0 := snapAt("root", "b0000000-0000-4000-8000-000000000001", t0, 100)
	deleted := root0
	deleted.Reason = "retention"
	events := []chain.Event{
		{Time: t0, Kind: chain.KindSnapshotCreated, Payload: root0},
		{Time: t0.Add(time.Millisecond), Kind: chain.KindSnapshotCreated, Payload: snapAt("home", "b0000000-0000-4000-8000-000000000002", t0, 200)},
		{Time: t3, Kind: chain.KindTicksMissed, Payload: chain.TicksMissedPayload{Count: 2, From: t0.Add(time.Second), To: t0.Add(2 * time.Second)}},
		{Time: t3, Kind: chain.KindSnapshotCreated, Payload: snapAt("root", "b0000000-0000-4000-8000-000000000003", t3, 103)},
		{Time: t3.Add(time.Millisecond), Kind: chain.KindSnapshotDeleted, Payload: deleted},
		{Time: t3.Add(2 * time.Millisecond), Kind: chain.KindSnapshotCreated, Payload: snapAt("home", "b0000000-0000-4000-8000-000000000004", t3, 203)},
	}
	if _, err := st.Append(ctx, events...); err != nil {
		t.Fatal(err)
	}
	gen, err := st.Get(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	id, err := st.ChainID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return db, scrubber{literal: []string{
		dir, "$TMP",
		id, "CHAIN-ID",
		gen.Time.Format(time.RFC3339Nano), "GENESIS-TIME",
		formatTime(gen.Time), "YYYY-MM-DDThh:mm:ss.sssZ", // same width: columns stay aligned
	}}
}

// tamper changes one stored payload byte behind the chain's back.
func tamper(t *testing.T, db string, height int) {
	t.Helper()
	conn, err := sql.Open("sqlite", db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	res, err := conn.Exec(`UPDATE blocks SET payload = replace(payload, '"root"', '"r00t"') WHERE height = ?`, height)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("tamper height %d: %d rows changed", height, n)
	}
}

func TestGoldenChain(t *testing.T) {
	db, s := fixtureChain(t)
	cases := []struct {
		name string
		args []string
		code int
	}{
		{"chain-log.txt", []string{"chain", "log"}, exitOK},
		{"chain-log.json", []string{"chain", "log", "--format", "json"}, exitOK},
		{"chain-log-kind.txt", []string{"chain", "log", "-n", "2", "--kind", "snapshot.created"}, exitOK},
		{"chain-head.txt", []string{"chain", "head"}, exitOK},
		{"chain-head.json", []string{"chain", "head", "--format", "json"}, exitOK},
		{"chain-show.txt", []string{"chain", "show", "3"}, exitOK},
		{"chain-verify.txt", []string{"chain", "verify"}, exitOK},
		{"chain-verify.json", []string{"chain", "verify", "--format", "json"}, exitOK},
		{"chain-verify-range.txt", []string{"chain", "verify", "--from", "2", "--to", "4"}, exitOK},
		{"snap-list.txt", []string{"snap", "list"}, exitOK},
		{"snap-list.json", []string{"snap", "list", "--format", "json"}, exitOK},
		{"chain-show-missing.txt", []string{"chain", "show", "999999"}, exitUsage},
		{"chain-show-missing.json", []string{"chain", "show", "999999", "--format", "json"}, exitUsage},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"--db", db}, c.args...)
			// JOURNAL_STREAM: log lines (the unanchored-verify warning)
			// without times.
			r := runCLI(t, cliEnv{"JOURNAL_STREAM": "8:1"}, args...)
			if r.code != c.code {
				t.Errorf("exit %d, want %d; stderr: %s", r.code, c.code, r.stderr)
			}
			checkGolden(t, c.name, args, r, s)
		})
	}
}

func TestGoldenChainVerifyMismatch(t *testing.T) {
	db, s := fixtureChain(t)
	tamper(t, db, 4)
	for _, name := range []string{"chain-verify-mismatch.txt", "chain-verify-mismatch.json"} {
		t.Run(name, func(t *testing.T) {
			args := []string{"--db", db, "chain", "verify"}
			if filepath.Ext(name) == ".json" {
				args = append(args, "--format", "json")
			}
			r := runCLI(t, cliEnv{"JOURNAL_STREAM": "8:1"}, args...)
			if r.code != exitCheckFailed {
				t.Errorf("exit %d, want %d; stderr: %s", r.code, exitCheckFailed, r.stderr)
			}
			checkGolden(t, name, args, r, s)
		})
	}
}

func TestGoldenMisc(t *testing.T) {
	good := filepath.Join(repoRoot, "testdata", "config", "good.toml")
	bad := filepath.Join(repoRoot, "testdata", "config", "bad", "many.toml")
	// JOURNAL_STREAM drops the time from log lines, as under systemd.
	env := cliEnv{"GHOSTBRIDGE_SNAP_INTERVAL": "2s", "GHOSTBRIDGE_LOG_FORMAT": "json", "JOURNAL_STREAM": "8:1234"}
	cases := []struct {
		name string
		env  cliEnv
		args []string
		code int
	}{
		{"version.txt", nil, []string{"version"}, exitOK},
		{"version.json", nil, []string{"version", "--format", "json"}, exitOK},
		{"help-exit-codes.txt", nil, []string{"help", "exit-codes"}, exitOK},
		{"config-show-defaults.txt", nil, []string{"config", "show"}, exitOK},
		{"config-show-defaults.json", nil, []string{"config", "show", "--format", "json"}, exitOK},
		{"config-show.txt", env, []string{"--config", good, "--db", "/srv/chain.db", "config", "show"}, exitOK},
		{"config-show.json", env, []string{"--config", good, "--db", "/srv/chain.db", "config", "show", "--format", "json"}, exitOK},
		{"config-validate-ok.txt", nil, []string{"config", "validate", good}, exitOK},
		{"config-validate-bad.txt", nil, []string{"config", "validate", bad}, exitUsage},
		{"config-validate-bad.json", nil, []string{"config", "validate", bad, "--format", "json"}, exitUsage},
		{"error-json.json", nil, []string{"chain", "show", "x", "--format", "json"}, exitUsage},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := runCLI(t, c.env, c.args...)
			if r.code != c.code {
				t.Errorf("exit %d, want %d; stderr: %s", r.code, c.code, r.stderr)
			}
			checkGolden(t, c.name, c.args, r, scrubber{})
		})
	}
}

// TestJSONGoldensHaveNoNull: no JSON document in a golden file (results on
// stdout, errors on stderr) holds null, so scripts can iterate every list
// without a check. Absent optional fields are omitted, not null.
func TestJSONGoldensHaveNoNull(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join(repoRoot, "testdata", "golden", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatal("no JSON golden files found")
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		_, rest, ok := strings.Cut(string(b), "\n--- stdout\n")
		stdout, stderr, ok2 := strings.Cut(rest, "--- stderr\n")
		if !ok || !ok2 {
			t.Errorf("%s: no stdout and stderr sections", p)
			continue
		}
		docs := 0
		for _, stream := range []string{stdout, stderr} {
			if !strings.HasPrefix(strings.TrimSpace(stream), "{") {
				continue // text (a log line, a text-mode error)
			}
			dec := json.NewDecoder(strings.NewReader(stream))
			for dec.More() {
				var v any
				if err := dec.Decode(&v); err != nil {
					t.Errorf("%s: %v", p, err)
					break
				}
				docs++
				for _, path := range nullPaths(v, "") {
					t.Errorf("%s: %s is null", filepath.Base(p), path)
				}
			}
		}
		if docs == 0 {
			t.Errorf("%s: no JSON document", p)
		}
	}
}

// nullPaths lists where v (a decoded JSON value) holds null, as jq paths.
func nullPaths(v any, path string) []string {
	switch x := v.(type) {
	case nil:
		if path == "" {
			path = "."
		}
		return []string{path}
	case map[string]any:
		var out []string
		for k, e := range x {
			out = append(out, nullPaths(e, path+"."+k)...)
		}
		return out
	case []any:
		var out []string
		for i, e := range x {
			out = append(out, nullPaths(e, fmt.Sprintf("%s[%d]", path, i))...)
		}
		return out
	}
	return nil
}
