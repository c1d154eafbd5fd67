package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ghostbridge/ghostbridge/pkg/diag"
)

// mkfifo makes a FIFO nobody writes to: reading it blocks for ever.
func mkfifo(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Fatalf("mkfifo: %v", err)
	}
	return p
}

// runPastFIFO runs ghostbridge with fifo named by its configuration. The
// command must refuse the FIFO rather than read it; should it block, the
// guard gives up after 30 s, opens the FIFO for writing so the blocked
// reader sees end of file, and fails the test. This guards against a
// hang; it does not bound the command's speed.
func runPastFIFO(t *testing.T, fifo string, env cliEnv, args ...string) result {
	t.Helper()
	done := make(chan result, 1)
	go func() { done <- runCLI(t, env, args...) }()
	select {
	case r := <-done:
		return r
	case <-t.Context().Done():
	case <-time.After(30 * time.Second):
	}
	if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
		w.Close()
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
	}
	t.Fatalf("%v: blocked reading the FIFO %s instead of refusing it", args, fifo)
	return result{}
}

// TestFIFORefused: a FIFO where the configuration names the Qdrant API
// key, its CA bundle, the verifier key or the checkpoint file is refused
// with one line naming the key; vector commands exit 2, chain verify
// exits 2, and diag fails the checks that need the file.
func TestFIFORefused(t *testing.T) {
	tr := newTrusted(t)
	vectorEnv := func(key, fifo string) cliEnv {
		env := cliEnv{"GHOSTBRIDGE_VECTOR_HOST": "127.0.0.1", key: fifo}
		if key == "GHOSTBRIDGE_VECTOR_TLS_CA_FILE" {
			env["GHOSTBRIDGE_VECTOR_TLS"] = "true"
		}
		return env
	}
	chainEnv := func(key, fifo string) cliEnv {
		env := cliEnv{}
		for k, v := range tr.env {
			env[k] = v
		}
		env[key] = fifo
		return env
	}
	const named = "a named pipe (FIFO), not a regular file"
	t.Run("vector", func(t *testing.T) {
		for _, c := range []struct{ env, key string }{
			{"GHOSTBRIDGE_VECTOR_API_KEY_FILE", "vector.api_key_file"},
			{"GHOSTBRIDGE_VECTOR_TLS_CA_FILE", "vector.tls_ca_file"},
		} {
			fifo := mkfifo(t)
			for _, verb := range [][]string{{"status"}, {"sync", "--once"}} {
				args := append([]string{"--db", tr.db, "vector"}, verb...)
				r := runPastFIFO(t, fifo, vectorEnv(c.env, fifo), args...)
				if r.code != exitUsage || strings.Count(r.stderr, "\n") != 1 || !strings.HasPrefix(r.stderr, "Error: ") ||
					!strings.Contains(r.stderr, c.key) || !strings.Contains(r.stderr, named) {
					t.Errorf("%s FIFO, %v: exit %d, stderr %q; want one line naming %s, exit 2", c.key, verb, r.code, r.stderr, c.key)
				}
			}
			args := []string{"--db", tr.db, "diag", "--only", "vector", "--format", "json"}
			r := runPastFIFO(t, fifo, vectorEnv(c.env, fifo), args...)
			rep := diagReport(t, r)
			for _, n := range []string{"vector.reachable", "vector.collection"} {
				if got := rep[n]; got.Status != diag.StatusFail || !strings.Contains(got.Detail, c.key) || !strings.Contains(got.Detail, named) {
					t.Errorf("%s FIFO: diag %s = %+v; want fail naming %s", c.key, n, got, c.key)
				}
			}
		}
	})
	t.Run("chain", func(t *testing.T) {
		for _, c := range []struct{ env, key string }{
			{"GHOSTBRIDGE_CHAIN_CHECKPOINT_FILE", "chain.checkpoint_file"},
			{"GHOSTBRIDGE_CHAIN_VERIFIER_KEY", "chain.verifier_key"},
		} {
			fifo := mkfifo(t)
			r := runPastFIFO(t, fifo, chainEnv(c.env, fifo), "--db", tr.db, "chain", "verify")
			if r.code != exitUsage || strings.Count(r.stderr, "\n") != 1 || !strings.HasPrefix(r.stderr, "Error: ") || !strings.Contains(r.stderr, c.key) {
				t.Errorf("%s FIFO, chain verify: exit %d, stderr %q; want one line naming %s, exit 2", c.key, r.code, r.stderr, c.key)
			}
			r = runPastFIFO(t, fifo, chainEnv(c.env, fifo), "--db", tr.db, "diag", "--only", "chain.verify", "--format", "json")
			if got := diagReport(t, r)["chain.verify"]; got.Status != diag.StatusFail || !strings.Contains(got.Detail, c.key) {
				t.Errorf("%s FIFO: diag chain.verify = %+v; want fail naming %s", c.key, got, c.key)
			}
		}
	})
}

// diagReport decodes a diag --format json run into its checks by name.
func diagReport(t *testing.T, r result) map[string]diag.Result {
	t.Helper()
	var rep diag.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("exit %d, %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	got := map[string]diag.Result{}
	for _, c := range rep.Checks {
		got[c.Name] = c
	}
	return got
}
