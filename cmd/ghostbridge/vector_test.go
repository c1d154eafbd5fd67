package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/qdrant/go-client/qdrant"
	"github.com/spf13/cobra"

	"github.com/ghostbridge/ghostbridge/pkg/chain"
	"github.com/ghostbridge/ghostbridge/pkg/vector"
	"github.com/ghostbridge/ghostbridge/pkg/vector/qdranttest"
)

// qdrantEnv points the [vector] table at a stand-in through the
// environment, as a systemd unit would.
func qdrantEnv(srv *qdranttest.Server) cliEnv {
	return cliEnv{
		"JOURNAL_STREAM":           "8:1",
		"GHOSTBRIDGE_VECTOR_HOST":  srv.Host(),
		"GHOSTBRIDGE_VECTOR_PORT":  strconv.Itoa(srv.Port()),
		"GHOSTBRIDGE_VECTOR_BATCH": "2",
	}
}

var targetSuffix = regexp.MustCompile(`(\d{8}T\d{6}\.\d{9}Z)-[0-9a-f]{4}\b`)

// TestGoldenVector runs sync, status and search against the stand-in over
// real gRPC, on the fixture chain.
func TestGoldenVector(t *testing.T) {
	db, s := fixtureChain(t)
	srv := qdranttest.Start(t, qdranttest.Options{})
	env := qdrantEnv(srv)
	cases := []struct {
		name string
		args []string
		code int
	}{
		{"vector-sync-once.txt", []string{"vector", "sync", "--once"}, exitOK},
		{"vector-sync-once-idle.txt", []string{"vector", "sync", "--once"}, exitOK},
		{"vector-status.txt", []string{"vector", "status"}, exitOK},
		{"vector-status.json", []string{"vector", "status", "--format", "json"}, exitOK},
		{"vector-search-like.txt", []string{"vector", "search", "--like", "1", "--limit", "3"}, exitOK},
		{"vector-search-like.json", []string{"vector", "search", "--like", "1", "--limit", "3", "--format", "json"}, exitOK},
		{"vector-search-kind.txt", []string{"vector", "search", "--text", "home", "--kind", "snapshot.created", "--source", "home"}, exitOK},
		{"vector-search-no-query.txt", []string{"vector", "search"}, exitUsage},
		{"vector-reindex.txt", []string{"vector", "reindex"}, exitOK},
		{"vector-reindex-status.txt", []string{"vector", "status"}, exitOK},
		{"vector-reindex-search-like.txt", []string{"vector", "search", "--like", "1", "--limit", "3"}, exitOK},
	}
	// Before the first sync (not golden: the lag runs from the genesis
	// block, stamped with the real clock).
	r := runCLI(t, env, "--db", db, "vector", "status")
	if r.code != exitOK || !strings.Contains(r.stdout, "cursor       none (never synced)") || !strings.Contains(r.stdout, "lag          7 blocks") || !strings.Contains(r.stdout, "(missing; vector sync creates it)") {
		t.Fatalf("status before sync: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"--db", db}, c.args...)
			r := runCLI(t, env, args...)
			if r.code != c.code {
				t.Errorf("exit %d, want %d; stderr: %s", r.code, c.code, r.stderr)
			}
			// A reindex target ends in a random suffix.
			r.stdout = targetSuffix.ReplaceAllString(r.stdout, "${1}-RAND")
			r.stderr = targetSuffix.ReplaceAllString(r.stderr, "${1}-RAND")
			checkGolden(t, c.name, args, r, s)
		})
	}
	ids, _ := srv.IDs("ghostbridge-events")
	if len(ids) != 7 {
		t.Fatalf("points %v, want the 7 fixture blocks", ids)
	}
}

// TestVectorSyncJSONLines: --format json prints one schema-1 "sync" line.
func TestVectorSyncJSONLines(t *testing.T) {
	db, _ := fixtureChain(t)
	srv := qdranttest.Start(t, qdranttest.Options{})
	r := runCLI(t, qdrantEnv(srv), "--db", db, "vector", "sync", "--once", "--format", "json")
	if r.code != exitOK || !strings.HasPrefix(r.stdout, `{"schema":1,"type":"sync",`) || strings.Count(r.stdout, "\n") != 1 {
		t.Fatalf("exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
}

// TestVectorBadConfig: each mistake is a one-line error naming the key,
// exit 2, and nothing is synced.
func TestVectorBadConfig(t *testing.T) {
	db, _ := fixtureChain(t)
	srv := qdranttest.Start(t, qdranttest.Options{})
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	wideKey := write("wide.key", "secret\n")
	if err := os.Chmod(wideKey, 0o644); err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(srv.Port())
	caFile := write("ca.pem", string(qdranttest.NewCA(t).PEM))
	noCert := write("nocert.pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
	longName := strings.Repeat("a", vector.MaxCollection+1)
	cases := []struct {
		name, toml, wantKey string
	}{
		{"ca file without tls", "[vector]\nhost = \"127.0.0.1\"\nport = " + port + "\ntls_ca_file = \"" + caFile + "\"\n", "vector.tls_ca_file = \"" + caFile + "\" (from " + dir},
		{"ca file unreadable", "[vector]\nhost = \"127.0.0.1\"\nport = " + port + "\ntls = true\ntls_ca_file = \"" + filepath.Join(dir, "missing.pem") + "\"\n", "vector.tls_ca_file"},
		{"ca file is a directory", "[vector]\nhost = \"127.0.0.1\"\nport = " + port + "\ntls = true\ntls_ca_file = \"" + dir + "\"\n", "vector.tls_ca_file"},
		{"ca file holds no certificate", "[vector]\nhost = \"127.0.0.1\"\nport = " + port + "\ntls = true\ntls_ca_file = \"" + noCert + "\"\n", "holds no PEM certificate"},
		{"ca file relative", "[vector]\nhost = \"127.0.0.1\"\nport = " + port + "\ntls = true\ntls_ca_file = \"ca.pem\"\n", "vector.tls_ca_file"},
		{"collection too long for reindex", "[vector]\nhost = \"127.0.0.1\"\nport = " + port + "\ncollection = \"" + longName + "\"\n", "Qdrant allows 255 and vector reindex appends 32"},
		{"missing host", "[vector]\nhost = \"\"\nport = " + port + "\n", "vector.host"},
		{"bad port", "[vector]\nhost = \"127.0.0.1\"\nport = 70000\n", "vector.port"},
		{"port not a number", "[vector]\nhost = \"127.0.0.1\"\nport = \"x\"\n", "vector.port"},
		{"dimension 0", "[vector]\nhost = \"127.0.0.1\"\nport = " + port + "\ndimension = 0\n", "vector.dimension"},
		{"bad distance", "[vector]\nhost = \"127.0.0.1\"\nport = " + port + "\ndistance = \"Hamming\"\n", "vector.distance"},
		{"api key file unreadable", "[vector]\nhost = \"127.0.0.1\"\nport = " + port + "\napi_key_file = \"" + filepath.Join(dir, "missing.key") + "\"\n", "vector.api_key_file"},
		{"api key file is a directory", "[vector]\nhost = \"127.0.0.1\"\nport = " + port + "\napi_key_file = \"" + dir + "\"\n", "vector.api_key_file"},
		{"api key file relative", "[vector]\nhost = \"127.0.0.1\"\nport = " + port + "\napi_key_file = \"key\"\n", "vector.api_key_file"},
		{"api key file readable by others", "[vector]\nhost = \"127.0.0.1\"\nport = " + port + "\napi_key_file = \"" + wideKey + "\"\n", "vector.api_key_file"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := write(fmt.Sprintf("c%d.toml", i), c.toml)
			for _, verb := range [][]string{{"sync", "--once"}, {"status"}} {
				r := runCLI(t, nil, append([]string{"--config", cfg, "--db", db, "vector"}, verb...)...)
				if r.code != exitUsage || strings.Count(r.stderr, "\n") != 1 || !strings.HasPrefix(r.stderr, "Error: ") || !strings.Contains(r.stderr, c.wantKey) {
					t.Errorf("%v: exit %d, stderr %q; want one line naming %s, exit 2", verb, r.code, r.stderr, c.wantKey)
				}
			}
		})
	}
	if ids, ok := srv.IDs("ghostbridge-events"); ok || len(ids) > 0 {
		t.Fatalf("bad configuration reached qdrant: %v", ids)
	}
}

// TestVectorAPIKey: the key from the file or the environment is sent; a
// wrong key fails without showing it.
func TestVectorAPIKey(t *testing.T) {
	db, _ := fixtureChain(t)
	srv := qdranttest.Start(t, qdranttest.Options{APIKey: "s3cret-key"})
	keyFile := filepath.Join(t.TempDir(), "qdrant.key")
	if err := os.WriteFile(keyFile, []byte("wrong-key-value\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := qdrantEnv(srv)
	env["GHOSTBRIDGE_VECTOR_API_KEY_FILE"] = keyFile
	r := runCLI(t, env, "--db", db, "--log-level", "debug", "vector", "sync", "--once")
	if r.code != exitFailure || !strings.Contains(r.stderr, "Unauthenticated") || strings.Contains(r.stderr+r.stdout, "wrong-key-value") {
		t.Fatalf("wrong key: exit %d stderr %q", r.code, r.stderr)
	}
	env = qdrantEnv(srv)
	env[apiKeyEnv] = "s3cret-key"
	r = runCLI(t, env, "--db", db, "--log-level", "debug", "vector", "sync", "--once")
	if r.code != exitOK || strings.Contains(r.stderr+r.stdout, "s3cret") {
		t.Fatalf("key from env: exit %d stderr %q", r.code, r.stderr)
	}
	// The Qdrant client warns through slog.Default; it lands on the
	// command's stderr in the command's log format (no time under
	// JOURNAL_STREAM).
	if !strings.Contains(r.stderr, `level=WARN msg="API key is being used without TLS`) {
		t.Fatalf("key without TLS: no warning in the command's log format on stderr: %q", r.stderr)
	}
}

// TestDefaultLogIsTheCommands: records sent to slog.Default (the Qdrant
// client's warnings) reach the logger of the command that runs, whatever
// the command, with attributes and groups added on the way; the last App
// to start gets them, and none once its Run is over.
func TestDefaultLogIsTheCommands(t *testing.T) {
	start := func(logFormat string) (*App, *bytes.Buffer) {
		ios, _, _, errOut := TestIO()
		a := NewApp(ios, func(string) string { return "" })
		a.flags = globalFlags{format: "text", logLevel: "info", logFormat: logFormat}
		if err := a.preRun(&cobra.Command{Annotations: map[string]string{annotSkipConfig: "true"}}); err != nil {
			t.Fatal(err)
		}
		return a, errOut
	}
	a, errA := start("json")
	defer a.releaseDefaultLog()
	slog.Default().With("k", "v").WithGroup("g").Warn("probe one", "x", 1)
	slog.Debug("probe below the level")
	for _, want := range []string{`"msg":"probe one"`, `"k":"v"`, `"g":{"x":1}`} {
		if !strings.Contains(errA.String(), want) {
			t.Errorf("first App's stderr lacks %s: %q", want, errA.String())
		}
	}
	if strings.Contains(errA.String(), "below the level") {
		t.Errorf("a debug record passed the info level: %q", errA.String())
	}
	b, errB := start("text")
	slog.Warn("probe two")
	if !strings.Contains(errB.String(), `level=WARN msg="probe two"`) || strings.Contains(errA.String(), "probe two") {
		t.Errorf("second App: stderr %q; first App's %q", errB.String(), errA.String())
	}
	a.releaseDefaultLog() // not a's any more: must not unclaim b's
	slog.Warn("probe three")
	b.releaseDefaultLog()
	slog.Warn("probe four")
	if !strings.Contains(errB.String(), "probe three") || strings.Contains(errA.String()+errB.String(), "probe four") {
		t.Errorf("after release: first %q, second %q", errA.String(), errB.String())
	}
}

// TestVectorMismatchRefused: a collection made with another size is
// refused with a clear one-line error, exit 2, and left as it was.
func TestVectorMismatchRefused(t *testing.T) {
	db, _ := fixtureChain(t)
	srv := qdranttest.Start(t, qdranttest.Options{})
	srv.CreateCollection("ghostbridge-events", 128, qdrant.Distance_Cosine)
	r := runCLI(t, qdrantEnv(srv), "--db", db, "vector", "sync", "--once")
	if r.code != exitUsage || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, "vector size 128") || !strings.Contains(r.stderr, "refusing") {
		t.Fatalf("exit %d stderr %q", r.code, r.stderr)
	}
	r = runCLI(t, qdrantEnv(srv), "--db", db, "vector", "status")
	if r.code != exitOK || !strings.Contains(r.stdout, "DIFFERS from the config") {
		t.Fatalf("status: exit %d stdout %q", r.code, r.stdout)
	}
	if ids, _ := srv.IDs("ghostbridge-events"); len(ids) != 0 {
		t.Fatalf("points written into a mismatched collection: %v", ids)
	}
}

// bigChain writes genesis plus n snapshot blocks.
func bigChain(t *testing.T, n int) string {
	t.Helper()
	db := filepath.Join(t.TempDir(), "chain.db")
	st, err := chain.Open(context.Background(), db, chain.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	evs := make([]chain.Event, n)
	for i := range evs {
		at := fixtureT0.Add(time.Duration(i) * time.Second)
		evs[i] = chain.Event{Time: at, Kind: chain.KindSnapshotCreated, Payload: chain.SnapshotPayload{
			Source: "root", SourcePath: "/", Snapshot: "/.snapshots/ghostbridge/root/" + at.Format("20060102T150405.000Z"),
			UUID: fmt.Sprintf("u-%d", i), ParentUUID: "p", Generation: uint64(i + 10), OTime: at,
		}}
	}
	if _, err := st.Append(context.Background(), evs...); err != nil {
		t.Fatal(err)
	}
	return db
}

// cursorOf reads the sync cursor of the default collection.
func cursorOf(t *testing.T, db string) (uint64, bool) {
	t.Helper()
	st, err := chain.Open(context.Background(), db, chain.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	h, ok, err := st.Cursor(context.Background(), vector.CursorName("ghostbridge-events"))
	if err != nil {
		t.Fatal(err)
	}
	return h, ok
}

// TestVectorTLSCAFile: a stand-in served over TLS with a certificate from a
// private CA is reached with vector.tls_ca_file naming that CA; without it
// the system's roots do not trust the server and the sync stops at once
// with one line saying so and naming the key to set.
func TestVectorTLSCAFile(t *testing.T) {
	db, _ := fixtureChain(t)
	ca := qdranttest.NewCA(t)
	srv := qdranttest.Start(t, qdranttest.Options{TLS: ca.ServerTLS(t)})
	caFile := filepath.Join(t.TempDir(), "qdrant-ca.pem")
	if err := os.WriteFile(caFile, ca.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	env := qdrantEnv(srv)
	env["GHOSTBRIDGE_VECTOR_TLS"] = "true"

	r := runCLI(t, env, "--db", db, "vector", "sync", "--once")
	if r.code == exitOK || strings.Count(r.stderr, "\n") != 1 ||
		!strings.Contains(r.stderr, "x509: certificate signed by unknown authority") ||
		!strings.Contains(r.stderr, "set vector.tls_ca_file") {
		t.Fatalf("without the CA: exit %d, stderr %q", r.code, r.stderr)
	}
	if _, ok := srv.IDs("ghostbridge-events"); ok {
		t.Fatal("a collection was made over an untrusted connection")
	}

	env["GHOSTBRIDGE_VECTOR_TLS_CA_FILE"] = caFile
	r = runCLI(t, env, "--db", db, "vector", "sync", "--once")
	if r.code != exitOK {
		t.Fatalf("with the CA: exit %d, stderr %q", r.code, r.stderr)
	}
	if ids, _ := srv.IDs("ghostbridge-events"); len(ids) != 7 {
		t.Fatalf("points %v, want the 7 fixture blocks", ids)
	}
	r = runCLI(t, env, "--db", db, "vector", "status", "--format", "json")
	if r.code != exitOK || !strings.Contains(r.stdout, `"lag_blocks": 0,`) || !strings.Contains(r.stdout, `"points": 7,`) {
		t.Fatalf("status with the CA: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
