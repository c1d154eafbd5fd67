package diag

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func statuses(r Report) []Status {
	out := make([]Status, len(r.Checks))
	for i, c := range r.Checks {
		out[i] = c.Status
	}
	return out
}

func names(r Report) []string {
	out := make([]string, len(r.Checks))
	for i, c := range r.Checks {
		out[i] = c.Name
	}
	return out
}

// TestRunConcurrent: every check waits until all of them have started,
// which only finishes when they run at once; run one after another, the
// first would wait for the rest until its timeout and be unknown. The
// results keep the order of the checks, not the order they finished in.
func TestRunConcurrent(t *testing.T) {
	const n = 8
	var started sync.WaitGroup
	started.Add(n)
	all := make(chan struct{})
	go func() { started.Wait(); close(all) }()
	var checks []Check
	for i := range n {
		checks = append(checks, Check{Name: fmt.Sprintf("g%d.c%d", i%3, i), Run: func(ctx context.Context) Outcome {
			started.Done()
			select {
			case <-all:
			case <-ctx.Done():
				return Unknown("", "ran alone")
			}
			// Finish in reverse order of start.
			time.Sleep(time.Duration(n-i) * time.Millisecond)
			if i == 3 {
				return Warn("do x", "check %d", i)
			}
			return Pass("check %d", i)
		}})
	}
	r := Run(t.Context(), checks, Options{Timeout: time.Minute})
	wantNames := make([]string, n)
	for i, c := range checks {
		wantNames[i] = c.Name
	}
	if got := names(r); !slices.Equal(got, wantNames) {
		t.Errorf("order = %v, want %v", got, wantNames)
	}
	for i, res := range r.Checks {
		want := StatusPass
		if i == 3 {
			want = StatusWarn
		}
		if res.Status != want || res.Detail != fmt.Sprintf("check %d", i) {
			t.Errorf("check %d = %s %q, want %s", i, res.Status, res.Detail, want)
		}
		if res.Group != fmt.Sprintf("g%d", i%3) {
			t.Errorf("check %d group = %q", i, res.Group)
		}
	}
	if r.Status != StatusWarn || r.Counts != (Counts{Pass: 7, Warn: 1}) || r.Schema != SchemaVersion {
		t.Errorf("report = %s %+v schema %d", r.Status, r.Counts, r.Schema)
	}
	if !strings.HasPrefix(r.Verdict, "WARNING: 1 of 8 checks warn (g0.c3)") {
		t.Errorf("verdict = %q", r.Verdict)
	}
}

// TestRunIgnoresContext: a check that never looks at ctx is unknown once
// its timeout passes, with a hint, and does not hold up the others.
func TestRunIgnoresContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		defer close(release)
		checks := []Check{
			{Name: "vector.reachable", Run: func(context.Context) Outcome { <-release; return Pass("late") }},
			{Name: "chain.verify", Run: func(context.Context) Outcome { return Pass("fine") }},
			Skipped("vm.libvirt", "no [vm] configured"),
		}
		start := time.Now()
		r := Run(t.Context(), checks, Options{Timeout: 300 * time.Millisecond})
		if got := statuses(r); !slices.Equal(got, []Status{StatusUnknown, StatusPass, StatusSkip}) {
			t.Fatalf("statuses = %v", got)
		}
		hung := r.Checks[0]
		if hung.Detail != "no answer within 300ms" || !strings.Contains(hung.Hint, "vector") || !strings.Contains(hung.Hint, "diag.timeout") {
			t.Errorf("hung check = %+v", hung)
		}
		// Fake time: exact, not a timing assertion.
		if r.Wall != 300*time.Millisecond || time.Since(start) != r.Wall {
			t.Errorf("wall = %s, want the timeout", r.Wall)
		}
		if r.Checks[2].Detail != "no [vm] configured" {
			t.Errorf("skip detail = %q", r.Checks[2].Detail)
		}
		if r.Status != StatusUnknown || !strings.HasPrefix(r.Verdict, "UNKNOWN: 1 of 2 checks could not tell (vector.reachable)") {
			t.Errorf("status %s, verdict %q", r.Status, r.Verdict)
		}
	})
}

// TestRunWallIsSlowest: with fake time the wall time of checks that
// sleep 100, 200 and 300 ms is exactly the slowest, and Sum their total.
func TestRunWallIsSlowest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var checks []Check
		for _, ms := range []int{300, 100, 200} {
			checks = append(checks, Check{Name: fmt.Sprintf("g.s%d", ms), Run: func(ctx context.Context) Outcome {
				select {
				case <-time.After(time.Duration(ms) * time.Millisecond):
					return Pass("slept")
				case <-ctx.Done():
					return Unknown("", "cut short")
				}
			}})
		}
		r := Run(t.Context(), checks, Options{})
		if r.Wall != 300*time.Millisecond || r.Sum != 600*time.Millisecond {
			t.Errorf("wall %s sum %s, want 300ms and 600ms", r.Wall, r.Sum)
		}
		if r.Status != StatusPass || r.Verdict != "OK: 3 checks pass, 0 skipped" {
			t.Errorf("status %s, verdict %q", r.Status, r.Verdict)
		}
	})
}

// TestRunPanic: a panicking check is unknown, names the panic, and the
// report still comes back.
func TestRunPanic(t *testing.T) {
	checks := []Check{
		{Name: "storage.free", Run: func(context.Context) Outcome { panic("statfs result out of range") }},
		{Name: "storage.mounts", Run: func(context.Context) Outcome { return Fail("mount -o remount,noatime /work", "/work lacks noatime") }},
	}
	r := Run(t.Context(), checks, Options{})
	p := r.Checks[0]
	if p.Status != StatusUnknown || !strings.Contains(p.Detail, "check panicked: statfs result out of range") || p.Hint == "" {
		t.Errorf("panicking check = %+v", p)
	}
	if r.Status != StatusFail || r.Counts != (Counts{Fail: 1, Unknown: 1}) {
		t.Errorf("status %s counts %+v", r.Status, r.Counts)
	}
	if r.Verdict != "CRITICAL: 1 of 2 checks fail (storage.mounts)" {
		t.Errorf("verdict = %q", r.Verdict)
	}
}

// TestRunOutcomeShapes: an empty status is unknown, multi-line details
// fold to one line, a run whose every check was skipped is unknown (it
// checked nothing), one with a skip beside a pass is OK.
func TestRunOutcomeShapes(t *testing.T) {
	r := Run(t.Context(), []Check{
		{Name: "a.empty", Run: func(context.Context) Outcome { return Outcome{Detail: "forgot the status"} }},
		{Name: "a.lines", Run: func(context.Context) Outcome { return Warn("line one\nline two", "x\n  y\tz") }},
	}, Options{})
	if r.Checks[0].Status != StatusUnknown {
		t.Errorf("empty status = %s", r.Checks[0].Status)
	}
	if r.Checks[1].Detail != "x y z" || r.Checks[1].Hint != "line one line two" {
		t.Errorf("folded = %+v", r.Checks[1])
	}
	r = Run(t.Context(), []Check{Skipped("vm.nics", "no [vm]"), Skipped("vm.libvirt", "no [vm]"), Skipped("vector.lag", "no [vector]")}, Options{})
	if r.Status != StatusUnknown || r.Verdict != "UNKNOWN: every selected check was skipped (no [vm]; no [vector])" || r.Status.ExitCode() != 3 {
		t.Errorf("all skipped: %s %q", r.Status, r.Verdict)
	}
	if r.Counts != (Counts{Skip: 3}) {
		t.Errorf("all skipped counts %+v", r.Counts)
	}
	r = Run(t.Context(), []Check{Skipped("vm.nics", "no [vm]"), {Name: "a.ok", Run: func(context.Context) Outcome { return Pass("fine") }}}, Options{})
	if r.Status != StatusPass || r.Verdict != "OK: 1 checks pass, 1 skipped" || r.Status.ExitCode() != 0 {
		t.Errorf("one skipped: %s %q", r.Status, r.Verdict)
	}
}

// TestRunInterrupted: cancelling the run's context makes running checks
// unknown as interrupted, not as timed out.
func TestRunInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	release := make(chan struct{})
	defer close(release)
	r := Run(ctx, []Check{{Name: "a.b", Run: func(context.Context) Outcome { <-release; return Pass("") }}}, Options{Timeout: time.Hour})
	if c := r.Checks[0]; c.Status != StatusUnknown || !strings.HasPrefix(c.Detail, "interrupted") || !strings.Contains(c.Hint, "run diag again") {
		t.Errorf("interrupted check = %+v", c)
	}
}

// TestRunKeepsOwnHintOnTimeout: a check that honours ctx ends before the
// hard cutoff and its own unknown, with the hint naming what it waited
// for, is what the report shows; one that returns unknown without a
// detail or hint gets the generic ones.
func TestRunKeepsOwnHintOnTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		checks := []Check{
			{Name: "vm.libvirt", Run: func(ctx context.Context) Outcome {
				<-ctx.Done()
				return Unknown("systemctl status libvirtd.service", "libvirtd accepted the connection but never answered")
			}},
			{Name: "vm.nics", Run: func(ctx context.Context) Outcome {
				<-ctx.Done()
				return Outcome{Status: StatusUnknown}
			}},
		}
		for range 20 { // the outcome must not depend on scheduling
			r := Run(t.Context(), checks, Options{Timeout: 2 * time.Second})
			if c := r.Checks[0]; c.Hint != "systemctl status libvirtd.service" || c.Detail != "libvirtd accepted the connection but never answered" {
				t.Fatalf("own unknown lost: %+v", c)
			}
			if c := r.Checks[1]; c.Detail != "no answer within 2s" || !strings.Contains(c.Hint, "diag.timeout") {
				t.Fatalf("bare unknown = %+v", c)
			}
			if r.Wall != 1900*time.Millisecond {
				t.Fatalf("wall = %s, want the check's deadline 1.9s", r.Wall)
			}
		}
	})
}

// TestRunnerHungCheck: a check that ignores ctx and never returns is
// started once by a Runner kept across three runs (as diag --watch keeps
// it); the later runs report it hung, since when, without starting
// another copy. Once it returns, the next run starts it again.
func TestRunnerHungCheck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		var mu sync.Mutex
		started := 0
		checks := []Check{
			{Name: "services.units", Run: func(context.Context) Outcome {
				mu.Lock()
				started++
				mu.Unlock()
				<-release
				return Pass("answered at last")
			}},
			{Name: "chain.head_age", Run: func(context.Context) Outcome { return Pass("fine") }},
		}
		rn := NewRunner(Options{Timeout: time.Second})
		t0 := time.Now()
		var reports []Report
		for range 3 {
			reports = append(reports, rn.Run(t.Context(), checks))
			time.Sleep(5 * time.Second)
		}
		if started != 1 {
			t.Errorf("hung check started %d times, want once", started)
		}
		if c := reports[0].Checks[0]; c.Status != StatusUnknown || c.Detail != "no answer within 1s" {
			t.Errorf("first run = %+v", c)
		}
		for _, r := range reports[1:] {
			c := r.Checks[0]
			want := "still running since " + t0.UTC().Format(time.RFC3339) + " (hung): not started again"
			if c.Status != StatusUnknown || c.Detail != want || !strings.Contains(c.Hint, "services subsystem") {
				t.Errorf("later run = %+v, want detail %q", c, want)
			}
			if r.Checks[1].Status != StatusPass {
				t.Errorf("healthy check beside the hung one = %+v", r.Checks[1])
			}
		}
		if got := rn.Running(); !slices.Equal(got, []string{"services.units"}) {
			t.Errorf("running = %v", got)
		}
		close(release)
		synctest.Wait()
		if got := rn.Running(); len(got) != 0 {
			t.Errorf("running after it returned = %v", got)
		}
		if r := rn.Run(t.Context(), checks); r.Status != StatusPass || started != 2 {
			t.Errorf("after release: %s, started %d times", r.Verdict, started)
		}
	})
}

func TestStatusOrder(t *testing.T) {
	order := []Status{StatusSkip, StatusPass, StatusWarn, StatusUnknown, StatusFail}
	for i := range order {
		for j := range order {
			if got := order[i].Worse(order[j]); got != (i > j) {
				t.Errorf("%s.Worse(%s) = %v", order[i], order[j], got)
			}
		}
	}
	codes := map[Status]int{StatusSkip: 0, StatusPass: 0, StatusWarn: 1, StatusFail: 2, StatusUnknown: 3}
	for s, want := range codes {
		if got := s.ExitCode(); got != want {
			t.Errorf("%s.ExitCode() = %d, want %d", s, got, want)
		}
	}
}

func TestSelect(t *testing.T) {
	checks := []Check{{Name: "net.bridges"}, {Name: "net.uplink"}, {Name: "chain.verify"}, {Name: "chain.head_age"}, {Name: "vm.nics"}}
	tests := []struct {
		name       string
		only, skip []string
		want       []string
		err        string
	}{
		{"all", nil, nil, []string{"net.bridges", "net.uplink", "chain.verify", "chain.head_age", "vm.nics"}, ""},
		{"group", []string{"chain"}, nil, []string{"chain.verify", "chain.head_age"}, ""},
		{"group and name", []string{"chain", "vm.nics"}, nil, []string{"chain.verify", "chain.head_age", "vm.nics"}, ""},
		{"skip a name", nil, []string{"chain.verify"}, []string{"net.bridges", "net.uplink", "chain.head_age", "vm.nics"}, ""},
		{"only a group, skip one of it", []string{"net"}, []string{"net.uplink"}, []string{"net.bridges"}, ""},
		{"unknown only", []string{"chain.verfy"}, nil, nil, `unknown check "chain.verfy"; known: chain, chain.head_age, chain.verify, net, net.bridges, net.uplink, vm, vm.nics`},
		{"unknown skip", nil, []string{"storage"}, nil, `unknown check "storage"`},
		{"prefix is not a group", []string{"ch"}, nil, nil, `unknown check "ch"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Select(checks, tt.only, tt.skip)
			if tt.err != "" {
				if !errors.Is(err, ErrUnknownCheck) || !strings.HasPrefix(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var gotNames []string
			for _, c := range got {
				gotNames = append(gotNames, c.Name)
			}
			if !slices.Equal(gotNames, tt.want) {
				t.Errorf("got %v, want %v", gotNames, tt.want)
			}
		})
	}
}

// TestCatalog: names are group.check, unique, and every group is a name
// Select accepts.
func TestCatalog(t *testing.T) {
	seen := map[string]bool{}
	for _, n := range Catalog {
		g, c, ok := strings.Cut(n, ".")
		if !ok || g == "" || c == "" || strings.Contains(c, ".") || seen[n] {
			t.Errorf("bad or duplicate catalog name %q", n)
		}
		seen[n] = true
	}
}

// parseProm parses the text format with the Prometheus parser.
func parseProm(t *testing.T, text string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, text)
	}
	return mfs
}

func gauge(t *testing.T, mfs map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	mf, ok := mfs[name]
	if !ok {
		t.Fatalf("no metric %s", name)
	}
	for _, m := range mf.GetMetric() {
		match := true
		for k, v := range labels {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			match = match && found
		}
		if match {
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no %s%v", name, labels)
	return 0
}

func sampleReport(t *testing.T) Report {
	return Run(t.Context(), []Check{
		{Name: "chain.verify", Run: func(context.Context) Outcome { return Pass("ok") }},
		{Name: "snapshots.loop", Run: func(context.Context) Outcome { return Fail("start it", "stopped") }},
		Skipped("vm.nics", "no [vm]"),
	}, Options{Now: func() time.Time { return time.Unix(1_800_000_000, 0) }})
}

func TestPrometheus(t *testing.T) {
	r := sampleReport(t)
	var b strings.Builder
	if err := WritePrometheus(&b, r); err != nil {
		t.Fatal(err)
	}
	checkProm(t, parseProm(t, b.String()))
}

func checkProm(t *testing.T, mfs map[string]*dto.MetricFamily) {
	t.Helper()
	for check, want := range map[string]Status{"chain.verify": StatusPass, "snapshots.loop": StatusFail, "vm.nics": StatusSkip} {
		group, _, _ := strings.Cut(check, ".")
		for _, s := range Statuses {
			v := gauge(t, mfs, "ghostbridge_diag_check_status", map[string]string{"check": check, "group": group, "status": string(s)})
			if (v == 1) != (s == want) || (v != 0 && v != 1) {
				t.Errorf("%s status=%s = %v, want one-hot on %s", check, s, v, want)
			}
		}
		gauge(t, mfs, "ghostbridge_diag_check_duration_seconds", map[string]string{"check": check})
	}
	if v := gauge(t, mfs, "ghostbridge_diag_status", nil); v != 2 {
		t.Errorf("ghostbridge_diag_status = %v, want 2 (critical)", v)
	}
	if v := gauge(t, mfs, "ghostbridge_diag_last_run_timestamp_seconds", nil); v != 1_800_000_000 {
		t.Errorf("last run = %v", v)
	}
	gauge(t, mfs, "ghostbridge_diag_run_duration_seconds", nil)
}

// TestTextfile: the file node exporter reads parses, replaces an older
// one whole, and leaves no temporary file behind.
func TestTextfile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ghostbridge.prom")
	if err := os.WriteFile(path, []byte("stale 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteTextfile(path, sampleReport(t)); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	checkProm(t, parseProm(t, string(b)))
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the textfile", len(entries))
	}
	if err := WriteTextfile(filepath.Join(dir, "missing", "x.prom"), sampleReport(t)); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("write into a missing directory: %v", err)
	}
}
