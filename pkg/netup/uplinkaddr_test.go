package netup_test

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/ghostbridge/ghostbridge/pkg/netup"
)

// TestUpRefusesUndeclaredUplinkAddrs: an address on the uplink that the
// bridge does not declare would stop working once the NIC is a port, so
// Up and plan refuse, naming it, and change nothing. The IPv6 link-local
// address stays on the NIC and is no reason to refuse.
func TestUpRefusesUndeclaredUplinkAddrs(t *testing.T) {
	h := newHost(t)
	ctx := context.Background()
	for _, a := range []string{"10.99.0.5/24", "2001:db8:5::2/64"} {
		if out, err := h.Exec(h.NS, "ip", "addr", "add", a, "dev", h.Uplink, "nodad"); err != nil {
			t.Fatalf("add %s: %v\n%s", a, err, out)
		}
	}
	for _, dry := range []bool{true, false} {
		_, err := netup.Up(ctx, h.deps, h.config(), netup.Options{DryRun: dry})
		if !errors.Is(err, netup.ErrInvalidConfig) {
			t.Fatalf("dry run %v: err %v, want ErrInvalidConfig", dry, err)
		}
		for _, want := range []string{"10.99.0.5/24", "2001:db8:5::2/64", "uplink0", "addresses"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not name %s", err, want)
			}
		}
		if strings.Contains(err.Error(), "fe80") {
			t.Errorf("error %q names the link-local address", err)
		}
	}
	if c := h.counts(); c != [3]int64{} {
		t.Errorf("refused up changed something: %v", c)
	}
	brs, err := h.ovs.Bridges(ctx)
	if err != nil || len(brs) != 0 {
		t.Errorf("bridges after refusal: %v %v", brs, err)
	}

	// Declared, they move to the bridge; link-local stays on the NIC.
	cfg := h.config()
	cfg.Bridges[0].Addresses = append(cfg.Bridges[0].Addresses, netip.MustParsePrefix("10.99.0.5/24"), netip.MustParsePrefix("2001:db8:5::2/64"))
	if _, err := netup.Up(ctx, h.deps, cfg, netup.Options{}); err != nil {
		t.Fatalf("up with the addresses declared: %v", err)
	}
	ls, err := h.nl.Links()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		switch l.Name {
		case h.Uplink:
			if len(l.Addrs) != 1 || !l.Addrs[0].Addr().IsLinkLocalUnicast() {
				t.Errorf("uplink keeps %v, want only its link-local address", l.Addrs)
			}
		case "ovsbr0":
			for _, a := range cfg.Bridges[0].Addresses {
				if !slices.Contains(l.Addrs, a) {
					t.Errorf("ovsbr0 lacks %s: %v", a, l.Addrs)
				}
			}
		}
	}
}

// TestUpIPv6AddrNoDAD: an IPv6 address moved to the bridge is usable at
// once (added with IFA_F_NODAD), as the kernel reports it.
func TestUpIPv6AddrNoDAD(t *testing.T) {
	h := newHost(t)
	ctx := context.Background()
	v6 := netip.MustParsePrefix("2001:db8:77::2/64")
	if out, err := h.Exec(h.NS, "ip", "addr", "add", v6.String(), "dev", h.Uplink, "nodad"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	cfg := h.config()
	cfg.Bridges[0].Addresses = append(cfg.Bridges[0].Addresses, v6)
	if _, err := netup.Up(ctx, h.deps, cfg, netup.Options{}); err != nil {
		t.Fatalf("up: %v\n%s", err, h.Log())
	}
	out, err := h.Exec(h.NS, "ip", "-6", "addr", "show", "dev", "ovsbr0", "to", v6.String())
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, v6.String()) || !strings.Contains(out, "nodad") || strings.Contains(out, "tentative") {
		t.Errorf("ovsbr0 %s: want it present with nodad and not tentative:\n%s", v6, out)
	}
}
