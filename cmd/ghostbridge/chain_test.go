package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ghostbridge/ghostbridge/pkg/chain"
	"github.com/ghostbridge/ghostbridge/pkg/snap"
)

// TestChainLogFollow: --follow prints blocks appended after it started,
// once each, as JSON lines, and stops with exit 0 when cancelled.
func TestChainLogFollow(t *testing.T) {
	db, _ := fixtureChain(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := newSyncBuffer()
	done := make(chan result, 1)
	go func() {
		done <- runCLIWith(t, cliOptions{ctx: ctx, out: out}, "--db", db, "chain", "log", "-n", "1", "--follow", "--format", "json", "--kind", "ticks.missed")
	}()
	waitFor := func(substr string) {
		t.Helper()
		for !strings.Contains(out.String(), substr) {
			select {
			case <-out.wrote:
			case r := <-done:
				t.Fatalf("chain log --follow ended early: exit %d, stderr %s", r.code, r.stderr)
			}
		}
	}
	waitFor(`"height":3`) // the last ticks.missed block before following

	st, err := chain.Open(ctx, db, chain.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	at := fixtureT0.Add(time.Minute)
	for i := range 3 {
		ev := []chain.Event{
			{Time: at, Kind: chain.KindTicksMissed, Payload: chain.TicksMissedPayload{Count: uint64(i + 1), From: at, To: at}},
			{Time: at, Kind: chain.KindSnapshotVanished, Payload: chain.SnapshotPayload{Source: "root", Snapshot: fmt.Sprintf("/s/%d", i), Reason: "gone"}},
		}
		if _, err := st.Append(ctx, ev...); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(`"height":11`)
	cancel()
	r := <-done
	if r.code != exitOK {
		t.Fatalf("exit %d after cancel, want 0; stderr %s", r.code, r.stderr)
	}
	var heights []float64
	for _, l := range jsonLines(t, r.stdout) {
		if l["type"] != "block" || l["kind"] != "ticks.missed" {
			t.Errorf("unexpected line %v", l)
		}
		heights = append(heights, l["height"].(float64))
	}
	if fmt.Sprint(heights) != "[3 7 9 11]" {
		t.Errorf("followed heights %v, want [3 7 9 11] (each once, filtered by kind)", heights)
	}
}

func TestExitCode(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	live := context.Background()
	cases := []struct {
		name string
		ctx  context.Context
		err  error
		want int
	}{
		{"nil", live, nil, exitOK},
		{"plain", live, errors.New("disk on fire"), exitFailure},
		{"usage", live, usageErrorf(errors.New("bad flag")), exitUsage},
		{"config", live, &ConfigError{Problems: []Problem{{Key: "db"}}}, exitUsage},
		{"config file", live, &configFileError{Path: "x", Err: errors.New("nope")}, exitUsage},
		{"snap invalid config", live, fmt.Errorf("run: %w", snap.ErrInvalidConfig), exitUsage},
		{"no database", live, fmt.Errorf("open: %w", chain.ErrNoDatabase), exitUsage},
		{"mismatch", live, fmt.Errorf("verify: %w", chain.ErrMismatch), exitCheckFailed},
		{"locked", live, &snap.LockedError{Path: "x.lock", PID: 42}, exitFailure},
		{"interrupted", cancelled, fmt.Errorf("scan: %w", context.Canceled), exitInterrupted},
		{"canceled without a signal", live, context.Canceled, exitFailure},
	}
	for _, c := range cases {
		if got := exitCode(c.ctx, c.err); got != c.want {
			t.Errorf("%s: exitCode(%v) = %d, want %d", c.name, c.err, got, c.want)
		}
	}
}

// TestUsageErrorsBeforeRun: errors cobra raises before a command runs
// are usage errors with a pointer to help.
func TestUsageErrorsBeforeRun(t *testing.T) {
	for _, args := range [][]string{
		{"bogus"},
		{"chain", "bogus"},
		{"chain", "show"},
		{"chain", "show", "1", "2"},
		{"chain", "log", "-n", "x"},
		{"chain", "log", "--kind", "snapshot.exploded"},
		{"chain", "verify", "--from", "5", "--to", "2"},
	} {
		r := runCLI(t, nil, args...)
		if r.code != exitUsage || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, "--help') ") && !strings.HasSuffix(r.stderr, "--help')\n") {
			t.Errorf("%v: exit %d, stderr %q; want 2 and one line pointing to --help", args, r.code, r.stderr)
		}
	}
}
