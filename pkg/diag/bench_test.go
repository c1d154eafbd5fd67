package diag

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ghostbridge/ghostbridge/internal/testenv"
	"github.com/ghostbridge/ghostbridge/pkg/chain"
)

// benchFiller is how many blocks the benchmark chain holds beyond the
// snapshots: over five hours of ticks at 1 Hz, so chain.verify does real work.
const benchFiller = 20_000

// BenchmarkDiagHealthy runs diag against a healthy test host built from
// real components: the snapshots and chain groups on real BTRFS and a
// chain of 20k blocks (no checkpoint: full verification), the storage
// group on that BTRFS loop filesystem, the services group against the
// systemd stand-in on a private dbus-daemon, security.sshd running the
// real `sshd -T`, and the net group on a userspace OVS host in a network
// namespace when Open vSwitch is installed. It reports the wall time of a
// run beside the sum of the checks' times and the slowest check's:
// checks run at once, so wall follows the slowest, not the sum.
func BenchmarkDiagHealthy(b *testing.B) {
	h := newSnapHost(b, 10)
	ctx := context.Background()
	fillChain(b, h.db, benchFiller)
	head := h.last(b)
	in := h.inputs(head.Add(500 * time.Millisecond))
	checks := append(SnapshotChecks(in, h.cfg, nil), ChainChecks(in)...)

	checks = append(checks, StorageChecks(StorageConfig{
		Mounts:         []MountSpec{{Path: h.mnt}},
		FreeMinPercent: 10,
		Paths:          []string{h.cfg.Dir, h.src},
	})...)

	bus := testenv.StartDBus(b)
	bus.ServeSystemd(b, map[string]testenv.SystemdUnit{
		"ghostbridge-snap.service":   {LoadState: "loaded", ActiveState: "active", SubState: "running"},
		"openvswitch-switch.service": {LoadState: "loaded", ActiveState: "active", SubState: "exited"},
		"qdrant.service":             {LoadState: "loaded", ActiveState: "active", SubState: "running"},
	})
	bus.OwnName(b, "org.ghostbridge.Bench")
	checks = append(checks, ServiceChecks(bus.Address,
		[]string{"ghostbridge-snap.service", "openvswitch-switch.service", "qdrant.service"},
		[]string{"org.ghostbridge.Bench"})...)

	checks = append(checks, SecurityChecks(benchSSHD(b))...)

	if _, err := exec.LookPath("ovs-vswitchd"); err == nil {
		checks = append(checks, benchNet(b)...)
	} else {
		b.Log("Open vSwitch not installed: the net group is left out")
	}

	var wall, sum, slowest time.Duration
	var r Report
	for b.Loop() {
		r = Run(ctx, checks, Options{Timeout: time.Minute})
		if r.Status != StatusPass {
			b.Fatalf("host not healthy: %s\n%s", r.Verdict, dumpReport(r))
		}
		wall += r.Wall
		sum += r.Sum
		var s time.Duration
		for _, c := range r.Checks {
			s = max(s, c.Duration)
		}
		slowest += s
	}
	b.Logf("last run, wall %s, sum %s:\n%s", r.Wall, r.Sum, dumpReport(r))
	n := float64(b.N)
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 / n }
	b.ReportMetric(ms(wall), "wall-ms")
	b.ReportMetric(ms(sum), "sum-ms")
	b.ReportMetric(ms(slowest), "slowest-ms")
	b.ReportMetric(float64(len(checks)), "checks")
}

// fillChain appends n ticks.missed blocks to the database at db.
func fillChain(b *testing.B, db string, n int) {
	b.Helper()
	ctx := context.Background()
	st, err := chain.Open(ctx, db, chain.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	for done := 0; done < n; {
		k := min(10_000, n-done)
		events := make([]chain.Event, k)
		for i := range events {
			at := time.Now()
			events[i] = chain.Event{Time: at, Kind: chain.KindTicksMissed, Payload: chain.TicksMissedPayload{Count: 1, From: at, To: at}}
		}
		if _, err := st.Append(ctx, events...); err != nil {
			b.Fatal(err)
		}
		done += k
	}
}

// benchSSHD writes a compliant sshd configuration with an Ed25519 host
// key and returns the security config that has `sshd -T` read it.
func benchSSHD(b *testing.B) SecurityConfig {
	b.Helper()
	h := NewSSHDHost(b)
	cfg := h.Config(b, h.Good()...)
	cfg.Listeners = []Listener{{Key: "snap.metrics_listen", Addr: "127.0.0.1:9731"}}
	return cfg
}

// benchNet converges a userspace OVS host in its own network namespace
// with net up and returns the net group's checks against it.
func benchNet(b *testing.B) []Check {
	b.Helper()
	h := NewNetHost(b)
	h.Up(b)
	return NetChecks(h.Cfg, h.Deps)
}

func dumpReport(r Report) string {
	var s strings.Builder
	for _, c := range r.Checks {
		s.WriteString(string(c.Status) + " " + c.Name + " " + c.Detail + " (" + c.Duration.String() + ")\n")
	}
	return s.String()
}
