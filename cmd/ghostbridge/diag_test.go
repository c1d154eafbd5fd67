package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ghostbridge/ghostbridge/pkg/diag"
	"github.com/ghostbridge/ghostbridge/pkg/netup"
	"github.com/ghostbridge/ghostbridge/pkg/sys/sysctl"
)

// durationRE matches the measured fields of a diag report, which differ
// from run to run once the clock is real.
var durationRE = regexp.MustCompile(`"(duration_ns|wall_ns|sum_ns)": [0-9]+`)

func normaliseDiag(s string) string {
	return durationRE.ReplaceAllString(s, `"$1": 0`)
}

// TestGoldenDiag: the report of the chain checks on the fixture chain, in
// text and JSON (alone on stdout, with its schema).
func TestGoldenDiag(t *testing.T) {
	db, s := fixtureChain(t)
	for _, name := range []string{"diag-chain.txt", "diag-chain.json"} {
		t.Run(name, func(t *testing.T) {
			args := []string{"--db", db, "diag", "--only", "chain"}
			if filepath.Ext(name) == ".json" {
				args = append(args, "--format", "json")
			}
			r := runCLI(t, nil, args...)
			if r.code != 0 {
				t.Errorf("exit %d, want 0; stderr: %s", r.code, r.stderr)
			}
			r.stdout = normaliseDiag(r.stdout)
			checkGolden(t, name, args, r, s)
			if filepath.Ext(name) == ".json" {
				var rep diag.Report
				if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
					t.Fatalf("stdout is not one JSON report: %v", err)
				}
				if rep.Schema != 1 || len(rep.Checks) != 2 || rep.Status != diag.StatusPass {
					t.Errorf("report = %+v", rep)
				}
			}
		})
	}
}

// TestGoldenDiagTampered: the JSON report of a tampered chain beside a
// group absent from the config: the failing check with its hint, the
// passing one, the skipped rows with their reason, counts and verdict.
func TestGoldenDiagTampered(t *testing.T) {
	db, s := fixtureChain(t)
	tamper(t, db, 4)
	args := []string{"--db", db, "diag", "--only", "chain,vm", "--format", "json"}
	r := runCLI(t, nil, args...)
	if r.code != 2 {
		t.Errorf("exit %d, want 2; stderr: %s", r.code, r.stderr)
	}
	r.stdout = normaliseDiag(r.stdout)
	checkGolden(t, "diag-tampered.json", args, r, s)
	var rep diag.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("stdout is not one JSON report: %v", err)
	}
	if rep.Status != diag.StatusFail || rep.Counts != (diag.Counts{Pass: 1, Fail: 1, Skip: 2}) || rep.Checks[0].Hint == "" {
		t.Errorf("report = %+v", rep)
	}
}

// TestDiagExitCodes: each Nagios code comes out of the real command on
// the real chain file.
func TestDiagExitCodes(t *testing.T) {
	cases := []struct {
		name    string
		env     cliEnv
		args    []string
		tamper  bool
		code    int
		verdict string
	}{
		{"ok", nil, []string{"--only", "chain"}, false, 0, "OK: 2 checks pass, 0 skipped"},
		{"warning: a configured source without snapshots", cliEnv{"GHOSTBRIDGE_SNAP_SOURCES": "root=/,data=/srv/data"},
			[]string{"--only", "snapshots.count"}, false, 1, "WARNING: 1 of 1 checks warn (snapshots.count)"},
		{"critical: chain tampered", nil, []string{"--only", "chain"}, true, 2, "CRITICAL: 1 of 2 checks fail (chain.verify)"},
		{"unknown: no answer in time", nil, []string{"--only", "chain", "--timeout", "1ns"}, false, 3, "UNKNOWN: 2 of 2 checks could not tell (chain.verify, chain.head_age)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			db, _ := fixtureChain(t)
			if c.tamper {
				tamper(t, db, 4)
			}
			r := runCLI(t, c.env, append([]string{"--db", db, "diag"}, c.args...)...)
			if r.code != c.code {
				t.Errorf("exit %d, want %d\n%s%s", r.code, c.code, r.stdout, r.stderr)
			}
			if !strings.Contains(r.stdout, "\n"+c.verdict) {
				t.Errorf("stdout lacks verdict %q:\n%s", c.verdict, r.stdout)
			}
			if r.stderr != "" {
				t.Errorf("stderr = %q, want nothing: the report says it", r.stderr)
			}
			if c.code != 0 && !strings.Contains(r.stdout, "hint: ") {
				t.Errorf("no hint under a check that is not passing:\n%s", r.stdout)
			}
		})
	}
}

// TestDiagUsageExitsUnknown: a mistake in using diag is UNKNOWN (3), as
// Nagios plugins report it, with one line on stderr.
func TestDiagUsageExitsUnknown(t *testing.T) {
	db, _ := fixtureChain(t)
	bad := filepath.Join(t.TempDir(), "bad.toml")
	if err := os.WriteFile(bad, []byte("[diag]\ntimeout = \"0s\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--only", "chain.verfy"}, `Error: unknown check "chain.verfy"; known: chain, chain.head_age, chain.verify,`},
		{[]string{"--skip", "nosuch"}, `Error: unknown check "nosuch"`},
		{[]string{"--format", "xml"}, `Error: --format "xml": want text, json or prometheus`},
		{[]string{"--timeout", "-1s"}, `Error: --timeout -1s: want a duration greater than 0 and at most 5m`},
		{[]string{"--watch", "1ms"}, `Error: --watch 1ms: want a duration of at least 100ms`},
		{[]string{"--nosuch"}, `Error: unknown flag: --nosuch`},
		{[]string{"extra"}, `Error: unknown command "extra" for "ghostbridge diag"`},
		{[]string{"--config", bad}, `Error: invalid config: diag.timeout = "0s"`},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			r := runCLI(t, nil, append([]string{"--db", db, "diag"}, c.args...)...)
			if r.code != 3 {
				t.Errorf("exit %d, want 3", r.code)
			}
			if !strings.HasPrefix(r.stderr, c.want) || strings.Count(r.stderr, "\n") != 1 {
				t.Errorf("stderr = %q, want one line starting %q", r.stderr, c.want)
			}
			if r.stdout != "" {
				t.Errorf("stdout = %q", r.stdout)
			}
		})
	}
	// Other commands keep their own codes and formats.
	if r := runCLI(t, nil, "--db", db, "chain", "head", "--format", "prometheus"); r.code != exitUsage {
		t.Errorf("chain head --format prometheus: exit %d, want %d", r.code, exitUsage)
	}
}

// TestDiagTextfile: --textfile writes what node exporter's textfile
// collector reads, and the Prometheus parser accepts it.
func TestDiagTextfile(t *testing.T) {
	db, _ := fixtureChain(t)
	tamper(t, db, 4)
	path := filepath.Join(t.TempDir(), "ghostbridge.prom")
	r := runCLI(t, nil, "--db", db, "diag", "--only", "chain", "--textfile", path, "--format", "json")
	if r.code != 2 {
		t.Fatalf("exit %d, want 2; %s", r.code, r.stderr)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(f)
	if err != nil {
		t.Fatal(err)
	}
	value := func(name string, labels ...string) float64 {
		t.Helper()
		for _, m := range mfs[name].GetMetric() {
			var got []string
			for _, l := range m.GetLabel() {
				got = append(got, l.GetName()+"="+l.GetValue())
			}
			if slices.Equal(got, labels) {
				return m.GetGauge().GetValue()
			}
		}
		t.Fatalf("no %s%v in the textfile", name, labels)
		return 0
	}
	if v := value("ghostbridge_diag_check_status", "check=chain.verify", "group=chain", "status=fail"); v != 1 {
		t.Errorf("chain.verify fail = %v, want 1", v)
	}
	if v := value("ghostbridge_diag_check_status", "check=chain.verify", "group=chain", "status=pass"); v != 0 {
		t.Errorf("chain.verify pass = %v, want 0", v)
	}
	if v := value("ghostbridge_diag_check_status", "check=chain.head_age", "group=chain", "status=pass"); v != 1 {
		t.Errorf("chain.head_age pass = %v, want 1", v)
	}
	if v := value("ghostbridge_diag_status"); v != 2 {
		t.Errorf("ghostbridge_diag_status = %v, want 2", v)
	}
	if v := value("ghostbridge_diag_last_run_timestamp_seconds"); v != float64(fixedNow.Unix()) {
		t.Errorf("last run = %v, want %d", v, fixedNow.Unix())
	}
	var families []*dto.MetricFamily
	for _, mf := range mfs {
		families = append(families, mf)
	}
	if len(families) != 5 {
		t.Errorf("%d metric families, want 5", len(families))
	}

	// --format prometheus prints the same form on stdout.
	r = runCLI(t, nil, "--db", db, "diag", "--only", "chain", "--format", "prometheus")
	if _, err := p.TextToMetricFamilies(strings.NewReader(r.stdout)); err != nil || r.code != 2 {
		t.Errorf("--format prometheus: exit %d, parse %v\n%s", r.code, err, r.stdout)
	}
}

// TestDiagWatch: --watch re-runs until interrupted, one JSON object per
// line, and exits with the last run's code.
func TestDiagWatch(t *testing.T) {
	db, _ := fixtureChain(t)
	tamper(t, db, 4)
	ctx, cancel := context.WithCancel(context.Background())
	out := newSyncBuffer()
	done := make(chan result)
	go func() {
		done <- runCLIWith(t, cliOptions{ctx: ctx, out: out}, "--db", db, "diag", "--only", "chain", "--watch", "100ms", "--format", "json")
	}()
	for strings.Count(out.String(), "\n") < 2 {
		<-out.wrote
	}
	cancel()
	r := <-done
	if r.code != 2 {
		t.Errorf("exit %d, want 2 (the last run's)", r.code)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	for _, l := range lines {
		var v struct {
			Schema int    `json:"schema"`
			Type   string `json:"type"`
			Status string `json:"status"`
		}
		if err := json.Unmarshal([]byte(l), &v); err != nil || v.Schema != 1 || v.Type != "report" || v.Status != "fail" {
			t.Errorf("line %q: %+v %v", l, v, err)
		}
	}
}

// TestDiagConfig: each [diag] key is decoded and validated with a
// one-line problem naming it.
func TestDiagConfig(t *testing.T) {
	good := `[diag]
timeout = "5s"
free_min_percent = 12.5
mounts = [{ path = "/work", options = ["nodatacow", "noatime"] }]
services = ["ghostbridge-snap.service", "openvswitch.service"]
dbus_names = ["org.example.OpDBus"]
dbus_address = "unix:path=/run/dbus/system_bus_socket"
sync_lag_max = 100
sshd = "/usr/sbin/sshd"
`
	dir := t.TempDir()
	goodPath := filepath.Join(dir, "good.toml")
	if err := os.WriteFile(goodPath, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, nil, "--config", goodPath, "config", "show", "--format", "json")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var shown struct {
		Config struct {
			Diag struct {
				DiagConfig
				Timeout string `json:"timeout"`
			} `json:"diag"`
		} `json:"config"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &shown); err != nil {
		t.Fatal(err)
	}
	d := shown.Config.Diag
	if d.Timeout != "5s" || d.FreeMinPercent != 12.5 || len(d.Mounts) != 1 || d.Mounts[0].Path != "/work" ||
		!slices.Equal(d.Mounts[0].Options, []string{"nodatacow", "noatime"}) || len(d.Services) != 2 ||
		d.DBusNames[0] != "org.example.OpDBus" || d.SyncLagMax != 100 || d.SSHD != "/usr/sbin/sshd" ||
		d.DBusAddress != "unix:path=/run/dbus/system_bus_socket" {
		t.Errorf("decoded %+v", d)
	}

	bad := `[diag]
timeout = "1h"
free_min_percent = 120
mounts = [{ path = "work", options = ["a,b"] }, { paht = "/x" }]
services = ["sshd", "ok.service", "ok.service"]
dbus_names = ["nodots", "1bad.name"]
dbus_address = "/run/dbus"
sync_lag_max = -1
sshd = "sshd -T"
nosuch = 1
`
	badPath := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(badPath, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	r = runCLI(t, nil, "config", "validate", badPath)
	if r.code != exitUsage {
		t.Errorf("exit %d, want %d", r.code, exitUsage)
	}
	for _, key := range []string{
		"diag.timeout =", "diag.free_min_percent =", "diag.mounts[0].path =", "diag.mounts[0].options[0] =",
		"diag.mounts[1].paht", "diag.services[0] =", "diag.services[2] =", "diag.dbus_names[0] =", "diag.dbus_names[1] =",
		"diag.dbus_address =", "diag.sync_lag_max =", "diag.sshd =", "diag.nosuch",
	} {
		if !strings.Contains(r.stdout, "invalid: "+key) {
			t.Errorf("no problem for %s in:\n%s", key, r.stdout)
		}
	}
	for _, l := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		if strings.HasPrefix(l, "invalid: diag.services[1]") {
			t.Errorf("a good value reported: %s", l)
		}
	}
}

// TestDiagCompletion: --only and --skip complete check and group names.
func TestDiagCompletion(t *testing.T) {
	r := runCLI(t, nil, "__complete", "diag", "--only", "snap")
	for _, want := range []string{"snapshots\n", "snapshots.loop\n", "snapshots.count\n", "snapshots.orphans\n"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("completion lacks %q:\n%s", want, r.stdout)
		}
	}
	r = runCLI(t, nil, "__complete", "diag", "--skip", "chain,vm.n")
	if !strings.Contains(r.stdout, "chain,vm.nics\n") {
		t.Errorf("comma-list completion lacks chain,vm.nics:\n%s", r.stdout)
	}
	r = runCLI(t, nil, "__complete", "diag", "--format", "")
	if !strings.Contains(r.stdout, "prometheus\n") {
		t.Errorf("--format completion lacks prometheus:\n%s", r.stdout)
	}
}

// TestDiagCatalogMatchesChecks: the names completion offers are the names
// the checks built from the default configuration carry, all of them.
func TestDiagCatalogMatchesChecks(t *testing.T) {
	a := NewApp(nil, func(string) string { return "" })
	a.conf.Config = defaultConfig()
	checks, closeChecks, err := diagChecks(a, a.conf.Config, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeChecks()
	var got []string
	for _, c := range checks {
		got = append(got, c.Name)
	}
	if !slices.Equal(got, diag.Catalog) {
		t.Errorf("checks %v, want diag.Catalog %v", got, diag.Catalog)
	}
	if long := diagLong(); !strings.Contains(long, "\n  chain.verify chain.head_age\n") || !strings.Contains(long, "  security.sshd security.listeners\n") {
		t.Errorf("long help lists the catalog wrongly:\n%s", long)
	}
}

// TestDiagChecksSelection: only the selected checks are built, by name
// and group, a skipped group is not built at all (so its name must not
// be looked up among the built checks), and unknown names are refused
// before anything is built.
func TestDiagChecksSelection(t *testing.T) {
	a := NewApp(nil, func(string) string { return "" })
	a.conf.Config = defaultConfig()
	cases := []struct {
		only, skip []string
		want       []string
	}{
		{[]string{"chain"}, nil, []string{"chain.verify", "chain.head_age"}},
		{[]string{"chain", "vector.lag"}, []string{"chain.verify"}, []string{"chain.head_age", "vector.lag"}},
		{[]string{"snapshots"}, []string{"net", "snapshots.count"}, []string{"snapshots.loop", "snapshots.orphans"}},
	}
	for _, c := range cases {
		checks, closeChecks, err := diagChecks(a, a.conf.Config, c.only, c.skip)
		if err != nil {
			t.Fatalf("only %v skip %v: %v", c.only, c.skip, err)
		}
		var got []string
		for _, ch := range checks {
			got = append(got, ch.Name)
		}
		if err := closeChecks(); err != nil {
			t.Error(err)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("only %v skip %v: %v, want %v", c.only, c.skip, got, c.want)
		}
	}
	if _, _, err := diagChecks(a, a.conf.Config, []string{"chain.verfy"}, nil); !errors.Is(err, diag.ErrUnknownCheck) {
		t.Errorf("unknown name: %v", err)
	}
}

// TestDiagVectorKeyUnreadable: without the API key the checks that ask
// Qdrant fail naming the key, and vector.lag, which needs no key, still
// runs.
func TestDiagVectorKeyUnreadable(t *testing.T) {
	env := cliEnv{"GHOSTBRIDGE_VECTOR_API_KEY_FILE": filepath.Join(t.TempDir(), "missing.key")}
	checkVectorUnusable(t, env, "cannot read the Qdrant API key")
}

// TestDiagVectorCAUnreadable: a CA bundle that cannot be read fails the
// checks that ask Qdrant, naming the key, and leaves the lag to run.
func TestDiagVectorCAUnreadable(t *testing.T) {
	env := cliEnv{"GHOSTBRIDGE_VECTOR_TLS": "true", "GHOSTBRIDGE_VECTOR_TLS_CA_FILE": filepath.Join(t.TempDir(), "missing.pem")}
	checkVectorUnusable(t, env, "cannot read the CA bundle for Qdrant")
}

func checkVectorUnusable(t *testing.T, env cliEnv, want string) {
	t.Helper()
	db, _ := fixtureChain(t)
	r := runCLI(t, env, "--db", db, "diag", "--only", "vector", "--format", "json")
	var rep diag.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("exit %d, %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	got := map[string]diag.Result{}
	for _, c := range rep.Checks {
		got[c.Name] = c
	}
	for _, n := range []string{"vector.reachable", "vector.collection"} {
		if c := got[n]; c.Status != diag.StatusFail || !strings.Contains(c.Detail, want) {
			t.Errorf("%s = %+v", n, c)
		}
	}
	if c := got["vector.lag"]; c.Status != diag.StatusPass {
		t.Errorf("vector.lag = %+v, want pass: it needs no key or CA", c)
	}
}

// TestDiagUnknownKeepsForwarding: when rtnetlink or ethtool cannot be
// opened, the checks that read them are unknown, and net.forwarding,
// which reads sysctls only, still runs.
func TestDiagUnknownKeepsForwarding(t *testing.T) {
	on := true
	cfg := netup.Config{Bridges: []netup.Bridge{{Name: "br0"}}, IPv4Forwarding: &on}
	cs := diagUnknown(diag.NetChecks(cfg, netup.Deps{Sysctl: sysctl.Proc{}}), "run diag as root", errors.New("open rtnetlink: permission denied"))
	r := diag.Run(context.Background(), cs, diag.Options{})
	for _, c := range r.Checks {
		blinded := c.Status == diag.StatusUnknown && strings.Contains(c.Detail, "open rtnetlink")
		switch {
		case c.Name == "net.forwarding" && blinded:
			t.Errorf("net.forwarding blinded: %+v", c)
		case c.Name == "net.bridges" && !blinded:
			t.Errorf("net.bridges = %+v, want unknown naming the error", c)
		}
	}
}

// TestDiagAllSkipped: a run whose every selected check is skipped checked
// nothing: UNKNOWN, exit 3, with the reasons.
func TestDiagAllSkipped(t *testing.T) {
	db, _ := fixtureChain(t)
	r := runCLI(t, nil, "--db", db, "diag", "--only", "vm")
	if r.code != 3 {
		t.Errorf("exit %d, want 3\n%s%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "\nUNKNOWN: every selected check was skipped (no [vm] table in the config)") {
		t.Errorf("verdict:\n%s", r.stdout)
	}
}

// TestDiagTextfileUnwritable: a --textfile that cannot be written exits 3
// (diag could not do what it was asked) after the report, which keeps
// the checks' own verdict.
func TestDiagTextfileUnwritable(t *testing.T) {
	db, _ := fixtureChain(t)
	tamper(t, db, 4)
	path := filepath.Join(t.TempDir(), "no", "such", "dir", "ghostbridge.prom")
	r := runCLI(t, nil, "--db", db, "diag", "--only", "chain", "--textfile", path)
	if r.code != 3 {
		t.Errorf("exit %d, want 3", r.code)
	}
	if !strings.Contains(r.stdout, "\nCRITICAL: 1 of 2 checks fail (chain.verify)") || !strings.Contains(r.stderr, "textfile "+path) {
		t.Errorf("stdout:\n%s\nstderr: %s", r.stdout, r.stderr)
	}
}
