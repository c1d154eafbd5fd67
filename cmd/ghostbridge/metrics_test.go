package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"

	"github.com/ghostbridge/ghostbridge/internal/testenv"
	"github.com/ghostbridge/ghostbridge/pkg/chain"
	"github.com/ghostbridge/ghostbridge/pkg/metrics/metricstest"
	"github.com/ghostbridge/ghostbridge/pkg/vector/qdranttest"
)

// scrapeDeadline bounds how long a test waits for a running process to
// reach a state; it is a hang guard, not a timing assertion.
const scrapeDeadline = 60 * time.Second

// metricsProc is a running ghostbridge loop with --metrics-listen
// 127.0.0.1:0: the port the system picked is read from its log.
type metricsProc struct {
	cmd    *exec.Cmd
	addr   string
	stderr *syncBuffer
	exited chan struct{}
	err    error // the exit status, once exited is closed
}

// startMetricsProc starts bin with args plus --metrics-listen
// 127.0.0.1:0 --log-format json and waits for the "serving metrics" log
// line. The process is killed at the end of the test if still running.
func startMetricsProc(t *testing.T, env []string, args ...string) *metricsProc {
	t.Helper()
	args = append(args, "--metrics-listen", "127.0.0.1:0", "--log-format", "json")
	p := &metricsProc{cmd: exec.Command(builtBinary(t), args...), stderr: newSyncBuffer(), exited: make(chan struct{})}
	p.cmd.Env = env
	pr, pw := io.Pipe()
	p.cmd.Stderr = pw
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		pw.Close()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	})
	found := make(chan string, 1)
	go func() {
		lines := bufio.NewScanner(pr)
		sent := false
		for lines.Scan() {
			_, _ = p.stderr.Write(append(lines.Bytes(), '\n'))
			var l struct{ Msg, Addr string }
			if !sent && json.Unmarshal(lines.Bytes(), &l) == nil && l.Msg == "serving metrics" {
				found <- l.Addr
				sent = true
			}
		}
		close(found)
	}()
	select {
	case addr, ok := <-found:
		if !ok {
			<-p.exited
			t.Fatalf("%v exited (%v) before serving metrics; stderr %s", args, p.err, p.stderr.String())
		}
		p.addr = addr
	case <-time.After(scrapeDeadline):
		t.Fatalf("%v: no \"serving metrics\" log line; stderr %s", args, p.stderr.String())
	}
	return p
}

// scrape fetches /metrics over HTTP and parses it with the Prometheus
// text parser.
func (p *metricsProc) scrape(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + p.addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v; stderr %s", err, p.stderr.String())
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// stop sends SIGTERM and wants exit 0.
func (p *metricsProc) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-p.exited
	if p.err != nil {
		t.Fatalf("after SIGTERM: %v, want exit 0; stderr %s", p.err, p.stderr.String())
	}
	if _, err := http.Get("http://" + p.addr + "/metrics"); err == nil {
		t.Error("metrics still served after the process exited")
	}
}

// sample returns the value of the series of family name whose labels
// include want (a gauge, counter or untyped value; a histogram's count),
// and whether there is one.
func sample(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	mf := fams[name]
	if mf == nil {
		return 0, false
	}
next:
	for _, m := range mf.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue(), true
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue(), true
		case m.GetHistogram() != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		case m.GetUntyped() != nil:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

func mustSample(t *testing.T, fams map[string]*dto.MetricFamily, name string) float64 {
	t.Helper()
	v, ok := sample(fams, name, nil)
	if !ok {
		t.Fatalf("%s not exposed", name)
	}
	return v
}

// runJSON runs the built binary and decodes its JSON stdout into v.
func runJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	cmd := exec.Command(builtBinary(t), append(args, "--format", "json")...)
	cmd.Env = cleanEnv()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v: %v; stdout %s", args, err, out)
	}
	if err := json.Unmarshal(out, v); err != nil {
		t.Fatalf("%v: %v: %s", args, err, out)
	}
}

// TestSnapRunMetricsProcess runs the real `snap run --metrics-listen` on
// a real BTRFS with checkpoint signing, scrapes /metrics over HTTP twice
// and checks: ticks increase between scrapes; at a moment no tick
// recorded anything between two scrapes, chain height equals what
// `chain head` says and snapshots live equals what `snap list` lists;
// the histograms and the checkpoint gauges are filled.
func TestSnapRunMetricsProcess(t *testing.T) {
	mnt := testenv.BTRFS(t, 0)
	src := testenv.MkSubvol(t, filepath.Join(mnt, "src"))
	dir := t.TempDir()
	db := filepath.Join(dir, "chain.db")
	key := filepath.Join(t.TempDir(), "cp.key")
	keygen := exec.Command(builtBinary(t), "chain", "keygen", "--out", key, "--name", "metrics-test")
	keygen.Env = cleanEnv()
	if out, err := keygen.CombinedOutput(); err != nil {
		t.Fatalf("keygen: %v: %s", err, out)
	}
	env := append(cleanEnv(),
		envForKey("chain.signing_key")+"="+key,
		envForKey("chain.checkpoint_file")+"="+filepath.Join(t.TempDir(), "checkpoint"),
		envForKey("chain.checkpoint_every")+"=2",
	)
	p := startMetricsProc(t, env, "--db", db, "snap", "run", "--source", "data="+src,
		"--dir", filepath.Join(mnt, "snaps"), "--interval", "500ms", "--keep", "2s")

	// Wait until retention has deleted something, so every metric has
	// seen data.
	deadline := time.Now().Add(scrapeDeadline)
	var first map[string]*dto.MetricFamily
	for {
		first = p.scrape(t)
		if v, _ := sample(first, "ghostbridge_snap_snapshots_deleted_total", nil); v > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no retention deletion seen; stderr %s", p.stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	ticks1 := mustSample(t, first, "ghostbridge_snap_ticks_total")
	var second map[string]*dto.MetricFamily
	for {
		second = p.scrape(t)
		if mustSample(t, second, "ghostbridge_snap_ticks_total") > ticks1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ticks stayed at %v; stderr %s", ticks1, p.stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if d1, d2 := mustSample(t, first, "ghostbridge_snap_tick_duration_seconds"), mustSample(t, second, "ghostbridge_snap_tick_duration_seconds"); d2 <= d1 {
		t.Errorf("tick duration samples %v then %v, want more", d1, d2)
	}

	// Compare with the CLI at a moment no tick landed between the scrapes
	// around it (every tick records a snapshot, so the height moves).
	matched := false
	for attempt := 0; attempt < 50 && !matched; attempt++ {
		before := p.scrape(t)
		var head struct {
			Height uint64
			Time   time.Time
		}
		runJSON(t, &head, "--db", db, "chain", "head")
		var list struct{ Snapshots []json.RawMessage }
		runJSON(t, &list, "--db", db, "snap", "list")
		after := p.scrape(t)
		h1, h2 := mustSample(t, before, "ghostbridge_chain_height"), mustSample(t, after, "ghostbridge_chain_height")
		if h1 != h2 {
			continue
		}
		matched = true
		if h1 != float64(head.Height) {
			t.Errorf("ghostbridge_chain_height %v, chain head says %d", h1, head.Height)
		}
		if ts, want := mustSample(t, after, "ghostbridge_chain_head_timestamp_seconds"), float64(head.Time.UnixNano())/1e9; math.Abs(ts-want) > 1e-6 {
			t.Errorf("ghostbridge_chain_head_timestamp_seconds %v, chain head's time is %v", ts, want)
		}
		if live := mustSample(t, after, "ghostbridge_snap_snapshots_live"); live != float64(len(list.Snapshots)) {
			t.Errorf("ghostbridge_snap_snapshots_live %v, snap list lists %d", live, len(list.Snapshots))
		}
	}
	if !matched {
		t.Fatal("every comparison raced a tick")
	}

	last := p.scrape(t)
	for _, name := range []string{
		"ghostbridge_snap_snapshot_create_duration_seconds", "ghostbridge_snap_snapshot_delete_duration_seconds",
	} {
		if n := mustSample(t, last, name); n == 0 {
			t.Errorf("%s has no samples", name)
		}
	}
	// The head age is there once the head is known, and never negative;
	// its size depends on the machine's speed, so it is not bounded here
	// (pkg/metrics tests it with an injected clock).
	if age := mustSample(t, last, "ghostbridge_chain_head_age_seconds"); age < 0 {
		t.Errorf("head age %v s", age)
	}
	if cp, h := mustSample(t, last, "ghostbridge_chain_checkpoint_height"), mustSample(t, last, "ghostbridge_chain_height"); cp < 1 || cp > h {
		t.Errorf("checkpoint height %v with chain height %v", cp, h)
	}
	if ts := mustSample(t, last, "ghostbridge_chain_checkpoint_timestamp_seconds"); ts < float64(time.Now().Add(-time.Hour).Unix()) {
		t.Errorf("checkpoint time %v is not recent", ts)
	}
	if rss := mustSample(t, last, "process_resident_memory_bytes"); rss <= 0 {
		t.Errorf("process RSS %v", rss)
	}
	checkDashboardServed(t, "snap run", last)
	p.stop(t)
}

// TestVectorSyncMetricsProcess runs the real `vector sync
// --metrics-listen` against the Qdrant stand-in and checks the cursor,
// lag and points over HTTP; that the lag grows while Qdrant is down (the
// loop is inside a retried call); and that the errors are counted by
// gRPC code.
func TestVectorSyncMetricsProcess(t *testing.T) {
	db := bigChain(t, 50) // heights 0..50
	srv := qdranttest.Start(t, qdranttest.Options{})
	env := append(cleanEnv(),
		"GHOSTBRIDGE_VECTOR_HOST="+srv.Host(),
		"GHOSTBRIDGE_VECTOR_PORT="+strconv.Itoa(srv.Port()),
		"GHOSTBRIDGE_VECTOR_INTERVAL=50ms")
	p := startMetricsProc(t, env, "--db", db, "vector", "sync")

	coll := map[string]string{"collection": "ghostbridge-events"}
	waitFor := func(what string, ok func(map[string]*dto.MetricFamily) bool) map[string]*dto.MetricFamily {
		t.Helper()
		deadline := time.Now().Add(scrapeDeadline)
		for {
			fams := p.scrape(t)
			if ok(fams) {
				return fams
			}
			if time.Now().After(deadline) {
				t.Fatalf("waiting for %s; stderr %s", what, p.stderr.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	val := func(fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
		v, _ := sample(fams, name, labels)
		return v
	}
	// Points are counted when a drain ends, the cursor after each window.
	fams := waitFor("cursor 50 and the drain counted", func(f map[string]*dto.MetricFamily) bool {
		return val(f, "ghostbridge_vector_sync_cursor", coll) == 50 && val(f, "ghostbridge_vector_points_upserted_total", coll) > 0
	})
	if lag := val(fams, "ghostbridge_vector_sync_lag_blocks", coll); lag != 0 {
		t.Errorf("lag %v after syncing everything", lag)
	}
	if n := val(fams, "ghostbridge_vector_points_upserted_total", coll); n != 51 {
		t.Errorf("points upserted %v, want 51", n)
	}
	// The collection did not exist: the first get said NotFound.
	if n := val(fams, "ghostbridge_vector_qdrant_errors_total", map[string]string{"op": "get_collection", "code": "NotFound"}); n < 1 {
		t.Errorf("NotFound on get collection not counted: %v", fams["ghostbridge_vector_qdrant_errors_total"])
	}
	drains := val(fams, "ghostbridge_vector_drain_duration_seconds", coll)
	fams = waitFor("another drain", func(f map[string]*dto.MetricFamily) bool {
		return val(f, "ghostbridge_vector_drain_duration_seconds", coll) > drains
	})
	checkDashboardServed(t, "vector sync", fams)

	// Qdrant goes down (for longer than the test); three blocks are
	// appended. The loop is stuck in a retried upsert, and the lag, read
	// from the chain at each scrape, still counts them.
	down := make([]codes.Code, 100000)
	for i := range down {
		down[i] = codes.Unavailable
	}
	srv.FailUpserts(down...)
	appendAfterHead(t, db, 3)
	fams = waitFor("lag 3 and Unavailable counted", func(f map[string]*dto.MetricFamily) bool {
		return val(f, "ghostbridge_vector_sync_lag_blocks", coll) == 3 &&
			val(f, "ghostbridge_vector_qdrant_errors_total", map[string]string{"op": "upsert", "code": "Unavailable"}) > 0
	})
	if c := val(fams, "ghostbridge_vector_sync_cursor", coll); c != 50 {
		t.Errorf("cursor %v during the outage, want 50", c)
	}
	if cur, _ := cursorOf(t, db); cur != 50 {
		t.Errorf("cursor in the database %d, metrics said 50", cur)
	}
	// Stopped while retrying, it still exits 0 and closes the listener.
	p.stop(t)
}

// appendAfterHead appends n snapshot blocks after the head of the chain at db.
func appendAfterHead(t *testing.T, db string, n int) {
	t.Helper()
	st, err := chain.Open(context.Background(), db, chain.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	head, err := st.Head(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		at := head.Time.Add(time.Duration(i+1) * time.Second)
		if _, err := st.Append(context.Background(), chain.Event{Time: at, Kind: chain.KindSnapshotCreated, Payload: chain.SnapshotPayload{
			Source: "root", SourcePath: "/", Snapshot: "/.snapshots/ghostbridge/root/" + at.Format("20060102T150405.000Z"),
			UUID: fmt.Sprintf("m-%d", i), ParentUUID: "p", Generation: uint64(1000 + i), OTime: at,
		}}); err != nil {
			t.Fatal(err)
		}
	}
}

// dashboardServedBy is which process serves the dashboard's metrics, by
// name prefix; the diag metrics come from `ghostbridge diag --textfile`
// instead (metricstest.DiagNames).
var dashboardServedBy = map[string][]string{
	"snap run":    {"ghostbridge_snap_", "ghostbridge_chain_", "ghostbridge_build_info", "go_", "process_"},
	"vector sync": {"ghostbridge_vector_", "ghostbridge_build_info", "go_", "process_"},
}

func dashboardExprs(t *testing.T) []metricstest.Expr {
	t.Helper()
	exprs, err := metricstest.DashboardExprs(filepath.Join(repoRoot, "dashboards", "ghostbridge.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(exprs) == 0 {
		t.Fatal("no expressions found in the dashboard")
	}
	return exprs
}

// checkDashboardServed fails unless every metric of the dashboard that
// process serves (by dashboardServedBy) is among what the real process
// served in fams.
func checkDashboardServed(t *testing.T, process string, fams map[string]*dto.MetricFamily) {
	t.Helper()
	served := metricstest.Names(slices.Collect(maps.Values(fams)))
	var mine []metricstest.Expr
	for _, e := range dashboardExprs(t) {
		var ms []string
		for _, n := range e.Metrics {
			if slices.ContainsFunc(dashboardServedBy[process], func(p string) bool { return strings.HasPrefix(n, p) }) {
				ms = append(ms, n)
			}
		}
		mine = append(mine, metricstest.Expr{Expr: e.Expr, Metrics: ms})
	}
	if missing := metricstest.Unknown(mine, served); len(missing) > 0 {
		t.Errorf("the dashboard queries metrics the real %s process did not serve: %v", process, missing)
	}
}

// TestDashboardMetricsCovered: every metric the dashboard queries is a
// diag metric or one that TestSnapRunMetricsProcess or
// TestVectorSyncMetricsProcess checks its real process serves.
func TestDashboardMetricsCovered(t *testing.T) {
	diagNames, err := metricstest.DiagNames()
	if err != nil {
		t.Fatal(err)
	}
	var uncovered []string
	for _, e := range dashboardExprs(t) {
		for _, n := range e.Metrics {
			covered := diagNames[n]
			for _, prefixes := range dashboardServedBy {
				covered = covered || slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(n, p) })
			}
			if !covered && !slices.Contains(uncovered, n) {
				uncovered = append(uncovered, n)
			}
		}
	}
	if len(uncovered) > 0 {
		t.Errorf("the dashboard queries metrics neither a process test nor diag covers: %v", uncovered)
	}
}

// TestMetricsListenRefused: an address without a host is a config error
// naming the key of the command's own table: exit 2, one line, nothing
// started (no database created).
func TestMetricsListenRefused(t *testing.T) {
	for _, tc := range []struct {
		args []string
		key  string
	}{
		{[]string{"snap", "run", "--metrics-listen", ":9731"}, "snap.metrics_listen"},
		{[]string{"vector", "sync", "--metrics-listen", ":9731"}, "vector.metrics_listen"},
	} {
		db := filepath.Join(t.TempDir(), "chain.db")
		r := runCLI(t, nil, append([]string{"--db", db}, tc.args...)...)
		if r.code != exitUsage {
			t.Errorf("%v: exit %d, want %d; stderr %s", tc.args, r.code, exitUsage, r.stderr)
		}
		want := "Error: invalid config: " + tc.key + ` = ":9731" (from --metrics-listen): no host; write 127.0.0.1:9731 (this host only) or 0.0.0.0:9731 (every interface) explicitly` + "\n"
		if r.stderr != want {
			t.Errorf("%v: stderr\n%q\nwant\n%q", tc.args, r.stderr, want)
		}
		if _, err := os.Stat(db); !os.IsNotExist(err) {
			t.Errorf("%v: database created (%v)", tc.args, err)
		}
	}
	r := runCLI(t, cliEnv{"GHOSTBRIDGE_SNAP_METRICS_LISTEN": "localhost"}, "--db", filepath.Join(t.TempDir(), "x.db"), "snap", "run")
	if r.code != exitUsage || !strings.Contains(r.stderr, "snap.metrics_listen = \"localhost\" (from GHOSTBRIDGE_SNAP_METRICS_LISTEN): want HOST:PORT") {
		t.Errorf("env without a port: exit %d, stderr %s", r.code, r.stderr)
	}
}

// TestMetricsListenFlagScope: --metrics-listen on snap run sets
// snap.metrics_listen only, on vector sync vector.metrics_listen only,
// and --source on vector search is not snap.sources.
func TestMetricsListenFlagScope(t *testing.T) {
	ios, _, _, _ := TestIO()
	root := newRootCmd(NewApp(ios, func(string) string { return "" }))
	find := func(path ...string) *cobra.Command {
		t.Helper()
		c, _, err := root.Find(path)
		if err != nil || c.Name() != path[len(path)-1] {
			t.Fatalf("command %v: %v", path, err)
		}
		return c
	}
	snapRun, vectorSync, vectorSearch := find("snap", "run"), find("vector", "sync"), find("vector", "search")
	for _, tc := range []struct {
		cmd  *cobra.Command
		key  string
		want string // flag name, "" for none
	}{
		{snapRun, "snap.metrics_listen", "metrics-listen"},
		{snapRun, "vector.metrics_listen", ""},
		{vectorSync, "vector.metrics_listen", "metrics-listen"},
		{vectorSync, "snap.metrics_listen", ""},
		{snapRun, "snap.sources", "source"},
		{vectorSearch, "snap.sources", ""},
		{snapRun, "db", "db"},
		{vectorSync, "log.level", "log-level"},
	} {
		// Cobra merges the root's persistent flags (--db, --log-level)
		// into a command's flags when it parses them, before loadConfig.
		if err := tc.cmd.ParseFlags(nil); err != nil {
			t.Fatal(err)
		}
		f := keyFlag(tc.cmd, tc.key)
		got := ""
		if f != nil {
			got = f.Name
		}
		if got != tc.want {
			t.Errorf("keyFlag(%s, %s) = %q, want %q", tc.cmd.CommandPath(), tc.key, got, tc.want)
		}
	}
	// End to end: the flag's value lands in the command's own key; the
	// other key keeps its (valid) default, so only one problem is named.
	r := runCLI(t, nil, "--db", filepath.Join(t.TempDir(), "x.db"), "vector", "sync", "--metrics-listen", "nohost")
	if strings.Contains(r.stderr, "snap.metrics_listen") || strings.Contains(r.stderr, "more") {
		t.Errorf("vector sync --metrics-listen reached snap.metrics_listen: %s", r.stderr)
	}
}

// TestNoLibraryImportsMetrics: the loops work the same with or without
// metrics; only the command layer wires them, so no other pkg/ package
// may depend on pkg/metrics.
func TestNoLibraryImportsMetrics(t *testing.T) {
	cmd := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Deps}} {{.}}{{end}}`, "./pkg/...")
	cmd.Dir = repoRoot
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(cmd.Args, " "), err, stderr.String())
	}
	const m = "github.com/ghostbridge/ghostbridge/pkg/metrics"
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, deps, _ := strings.Cut(line, " ")
		if pkg != m && slices.Contains(strings.Fields(deps), m) {
			t.Errorf("%s depends on %s", pkg, m)
		}
	}
}
