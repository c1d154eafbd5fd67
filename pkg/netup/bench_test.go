package netup_test

import (
	"context"
	"os/exec"
	"testing"

	"github.com/ghostbridge/ghostbridge/pkg/netup"
)

// BenchmarkConverge times, on one scratch host: the first converge of the
// two-bridge host (then down again, each iteration), an idempotent re-run,
// and the shell oneshot an operator would otherwise run on every boot.
func BenchmarkConverge(b *testing.B) {
	ctx := context.Background()
	h := newHostB(b)
	cfg := h.config()
	b.Run("first-up+down", func(b *testing.B) {
		for b.Loop() {
			if _, err := netup.Up(ctx, h.deps, cfg, netup.Options{}); err != nil {
				b.Fatal(err)
			}
			if _, err := netup.Down(ctx, h.deps, netup.Options{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	if _, err := netup.Up(ctx, h.deps, cfg, netup.Options{}); err != nil {
		b.Fatal(err)
	}
	b.Run("rerun", func(b *testing.B) {
		c0 := h.counts()
		for b.Loop() {
			res, err := netup.Up(ctx, h.deps, cfg, netup.Options{})
			if err != nil || !res.InSync {
				b.Fatal(err, res.Changes)
			}
		}
		if h.counts() != c0 {
			b.Fatalf("re-runs changed something: %v -> %v", c0, h.counts())
		}
		b.ReportMetric(0, "mutations/op")
	})
	// What a hand-written oneshot runs each boot: every command, always.
	mgmt := "unix:" + h.Dir + "/ovsbr0.mgmt"
	db := "--db=unix:" + h.DB
	script := [][]string{
		{"ovs-vsctl", db, "--may-exist", "add-br", "ovsbr0", "--", "set", "bridge", "ovsbr0", "datapath_type=netdev", "fail_mode=secure"},
		{"ovs-vsctl", db, "--may-exist", "add-port", "ovsbr0", h.Uplink},
		{"ovs-vsctl", db, "--may-exist", "add-port", "ovsbr0", "gbint0", "--", "set", "interface", "gbint0", "type=internal"},
		{"ovs-vsctl", db, "--may-exist", "add-br", "ovsbr1", "--", "set", "bridge", "ovsbr1", "datapath_type=netdev"},
		{"ovs-vsctl", db, "--may-exist", "add-port", "ovsbr1", "vm0", "tag=10", "--", "set", "interface", "vm0", "type=internal"},
		{"ip", "netns", "exec", h.NS, "ethtool", "-K", h.Uplink, "tso", "off", "gso", "off", "gro", "off", "rx", "off", "tx", "off"},
		{"ip", "-n", h.NS, "link", "set", "ovsbr0", "up"},
		{"ip", "-n", h.NS, "link", "set", "ovsbr1", "up"},
		{"ip", "-n", h.NS, "addr", "replace", h.UplinkAddr.String(), "dev", "ovsbr0"},
		{"ip", "-n", h.NS, "addr", "replace", "10.88.0.1/24", "dev", "ovsbr1"},
		{"ip", "-n", h.NS, "route", "replace", "default", "via", h.Gateway.String(), "dev", "ovsbr0"},
		{"ip", "netns", "exec", h.NS, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"},
		{"ovs-ofctl", "add-flow", mgmt, "priority=1,actions=drop"},
	}
	b.Run("shell-oneshot", func(b *testing.B) {
		for b.Loop() {
			for _, argv := range script {
				if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
					b.Fatalf("%v: %v: %s", argv, err, out)
				}
			}
		}
		b.ReportMetric(float64(len(script)), "processes/op")
	})
}
