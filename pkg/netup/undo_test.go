package netup_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/ghostbridge/ghostbridge/pkg/netup"
)

// refusingSysctl is the real /proc/sys adapter with writes refused, as a
// read-only /proc/sys or a security module would: the last step of up
// fails after everything else has changed.
type refusingSysctl struct{ netup.Sysctl }

var errRefused = errors.New("write refused")

func (refusingSysctl) Set(key, _ string) error { return errRefused }

// TestUpUndoesOnFailure: when a step of up fails, the host ends exactly
// as it was before up started, both on a fresh host (bridges, addresses,
// routes and offloads moved, then the last step fails) and on a
// converged one (a flow table Open vSwitch rejects after another
// bridge's table was already replaced).
func TestUpUndoesOnFailure(t *testing.T) {
	ctx := context.Background()
	t.Run("last step fails on a fresh host", func(t *testing.T) {
		h := newHost(t)
		h.prepareHost(t)
		before := h.full(t)
		d := h.deps
		d.Sysctl = refusingSysctl{h.deps.Sysctl}
		var applied []string
		_, err := netup.Up(ctx, d, h.config(), netup.Options{OnChange: func(c netup.Change) { applied = append(applied, c.String()) }})
		if !errors.Is(err, errRefused) || !strings.Contains(err.Error(), "every change made was undone") {
			t.Fatalf("up: %v", err)
		}
		if len(applied) < 10 || !strings.Contains(strings.Join(applied, "\n"), "- address 10.77.0.2/24 on uplink0") {
			t.Errorf("failure came too early to test the undo; applied:\n%s", strings.Join(applied, "\n"))
		}
		t.Logf("%d changes applied before the failure: %v", len(applied), err)
		sameState(t, "after failed up", h.full(t), before)
		h.ping(t, h.Peer, h.UplinkAddr.Addr().String())
	})
	t.Run("flow rejected by the switch on a converged host", func(t *testing.T) {
		h := newHost(t)
		h.prepareHost(t)
		cfg := h.config()
		if _, err := netup.Up(ctx, h.deps, cfg, netup.Options{}); err != nil {
			t.Fatal(err)
		}
		before := h.full(t)
		cfg.Bridges[0].AllowMACs = []string{"52:54:00:12:34:56"}
		cfg.Bridges[1].Ports = append(cfg.Bridges[1].Ports, netup.Port{Name: "vm1", Tag: 20})
		// ovs-ofctl parse-flow accepts it; the switch refuses it: there
		// is no group 99.
		cfg.Bridges[1].Flows = []string{"priority=5,actions=group:99"}
		var applied []string
		_, err := netup.Up(ctx, h.deps, cfg, netup.Options{OnChange: func(c netup.Change) { applied = append(applied, c.String()) }})
		if err == nil || errors.Is(err, netup.ErrInvalidConfig) || !strings.Contains(err.Error(), "every change made was undone") {
			t.Fatalf("up: %v", err)
		}
		if got := strings.Join(applied, "\n"); !strings.Contains(got, "+ port vm1") || !strings.Contains(got, "~ flows ovsbr0") {
			t.Errorf("failure came before the port and ovsbr0's flows changed; applied:\n%s", got)
		}
		t.Logf("applied before the failure: %v; error: %v", applied, err)
		sameState(t, "after failed up", h.full(t), before)
	})
}
