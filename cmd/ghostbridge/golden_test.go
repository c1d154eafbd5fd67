package main

import (
	"context"
	"database/sql"
	"path/filepath"
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
	}{
		{"chain-log.txt", []string{"chain", "log"}},
		{"chain-log.json", []string{"chain", "log", "--format", "json"}},
		{"chain-log-kind.txt", []string{"chain", "log", "-n", "2", "--kind", "snapshot.created"}},
		{"chain-head.txt", []string{"chain", "head"}},
		{"chain-head.json", []string{"chain", "head", "--format", "json"}},
		{"chain-show.txt", []string{"chain", "show", "3"}},
		{"chain-verify.txt", []string{"chain", "verify"}},
		{"chain-verify.json", []string{"chain", "verify", "--format", "json"}},
		{"chain-verify-range.txt", []string{"chain", "verify", "--from", "2", "--to", "4"}},
		{"snap-list.txt", []string{"snap", "list"}},
		{"snap-list.json", []string{"snap", "list", "--format", "json"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"--db", db}, c.args...)
			r := runCLI(t, nil, args...)
			if r.code != exitOK {
				t.Errorf("exit %d, want 0; stderr: %s", r.code, r.stderr)
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
			r := runCLI(t, nil, args...)
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
