package netup_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ghostbridge/ghostbridge/pkg/netup"
)

// kernelRoutes is `ip -d -j -4 route show table all` in the host's
// namespace without the kernel's local table, each route as canonical
// JSON, sorted: what the kernel itself reports, not what netdev parses.
func (h *host) kernelRoutes(t *testing.T) []map[string]any {
	t.Helper()
	return h.kernelRoutesOf(t, "-4")
}

// kernelRoutesOf is kernelRoutes for the address family flag family.
func (h *host) kernelRoutesOf(t *testing.T, family string) []map[string]any {
	t.Helper()
	out, err := h.Exec(h.NS, "ip", "-d", "-j", family, "route", "show", "table", "all")
	if err != nil {
		t.Fatal(err)
	}
	var rs []map[string]any
	if err := json.Unmarshal([]byte(out), &rs); err != nil {
		t.Fatalf("ip -j route: %v\n%s", err, out)
	}
	return slices.DeleteFunc(rs, func(r map[string]any) bool { return r["table"] == "local" })
}

// devs lists the devices route r names, itself and in its nexthops.
func devs(r map[string]any) []string {
	var ds []string
	if d, ok := r["dev"].(string); ok {
		ds = append(ds, d)
	}
	nhs, _ := r["nexthops"].([]any)
	for _, nh := range nhs {
		if d, ok := nh.(map[string]any)["dev"].(string); ok {
			ds = append(ds, d)
		}
	}
	return ds
}

// through renders the routes that use dev with dev replaced by "DEV",
// so routes on the uplink and on the bridge compare equal exactly when
// they differ only in their device.
func through(t *testing.T, rs []map[string]any, dev string) []string {
	t.Helper()
	var out []string
	for _, r := range rs {
		if !slices.Contains(devs(r), dev) {
			continue
		}
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, strings.ReplaceAll(string(b), `"dev":"`+dev+`"`, `"dev":"DEV"`))
	}
	slices.Sort(out)
	return out
}

func all(t *testing.T, rs []map[string]any) []string {
	t.Helper()
	var out []string
	for _, r := range rs {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	slices.Sort(out)
	return out
}

func sameList(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s: routes differ\ngot:\n%s\nwant:\n%s", what, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestRoutesKeepAttributes: routes through the uplink with a preferred
// source, metrics, a protocol, link scope, another table and several
// nexthops move to the bridge on up and come back to the NIC on down and
// on a try's rollback, as the kernel reports them, equal in everything
// but the device.
func TestRoutesKeepAttributes(t *testing.T) {
	h := newHost(t)
	ctx := context.Background()
	cfg := h.config()
	gw, src, up := h.Gateway.String(), h.UplinkAddr.Addr().String(), h.Uplink
	for _, argv := range [][]string{
		{"ip", "route", "replace", "default", "via", gw, "dev", up, "src", src, "mtu", "1450", "proto", "static"},
		{"ip", "route", "add", "198.51.100.0/24", "via", gw, "dev", up, "src", src, "mtu", "lock", "1400", "advmss", "1360", "initcwnd", "10", "proto", "static", "metric", "5"},
		{"ip", "route", "add", "10.66.0.0/24", "dev", up, "proto", "static", "scope", "link"},
		{"ip", "route", "add", "203.0.113.0/24", "proto", "static", "nexthop", "via", gw, "dev", up, "weight", "1", "nexthop", "via", "10.77.0.3", "dev", up, "weight", "3"},
		{"ip", "route", "add", "192.0.2.0/25", "via", gw, "dev", up, "table", "100", "proto", "static"},
	} {
		if out, err := h.Exec(h.NS, argv...); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	before := h.kernelRoutes(t)
	onNIC := through(t, before, up)
	if len(onNIC) != 6 { // the five above and the kernel's prefix route
		t.Fatalf("routes through %s: %d, want 6:\n%s", up, len(onNIC), strings.Join(onNIC, "\n"))
	}
	for _, want := range []string{`"prefsrc":"` + src, `"mtu":1450`, `"protocol":"static"`, `"scope":"link"`, `"nexthops":[`, `"table":"100"`, `"advmss":1360`} {
		if !strings.Contains(strings.Join(onNIC, "\n"), want) {
			t.Fatalf("test routes lack %s:\n%s", want, strings.Join(onNIC, "\n"))
		}
	}

	if _, err := netup.Up(ctx, h.deps, cfg, netup.Options{}); err != nil {
		t.Fatalf("up: %v", err)
	}
	afterUp := h.kernelRoutes(t)
	sameList(t, "on the bridge after up", through(t, afterUp, "ovsbr0"), onNIC)
	if left := through(t, afterUp, up); len(left) != 0 {
		t.Errorf("routes left on %s: %v", up, left)
	}
	h.ping(t, h.Peer, src)
	if res, err := netup.Up(ctx, h.deps, cfg, netup.Options{DryRun: true}); err != nil || !res.InSync {
		t.Errorf("second up: %v %v", kinds(res.Changes), err)
	}

	if _, err := netup.Down(ctx, h.deps, netup.Options{}); err != nil {
		t.Fatalf("down: %v", err)
	}
	sameList(t, "after down", all(t, h.kernelRoutes(t)), all(t, before))

	var during []map[string]any
	_, err := netup.Try(ctx, h.deps, cfg, netup.TryOptions{StateDir: t.TempDir(), Timeout: time.Millisecond,
		OnWaiting: func(netup.Result, netup.TryInfo) { during = h.kernelRoutes(t) }})
	if !errors.Is(err, netup.ErrRolledBack) {
		t.Fatalf("try: %v", err)
	}
	sameList(t, "on the bridge during the try", through(t, during, "ovsbr0"), onNIC)
	sameList(t, "after the try's rollback", all(t, h.kernelRoutes(t)), all(t, before))
	h.ping(t, h.Peer, src)
}

// TestRoutesIPv6: a static IPv6 route through the uplink moves to the
// bridge with its metric and MTU, and comes back on down and on a try's
// rollback. A route the kernel learned from a router advertisement
// (proto ra, with a lifetime and a router preference) is left on the
// uplink: moved, it would become permanent and lose its preference.
func TestRoutesIPv6(t *testing.T) {
	h := newHost(t)
	ctx := context.Background()
	cfg := h.config()
	addr6 := netip.MustParsePrefix("2001:db8:77::2/64")
	cfg.Bridges[0].Addresses = append(cfg.Bridges[0].Addresses, addr6)
	up := h.Uplink
	for _, argv := range [][]string{
		{"ip", "-6", "addr", "add", addr6.String(), "dev", up, "nodad"},
		{"ip", "-6", "route", "add", "2001:db8:99::/48", "via", "2001:db8:77::1", "dev", up, "proto", "static", "metric", "5", "mtu", "1400"},
		{"ip", "-6", "route", "add", "2001:db8:aa::/48", "via", "fe80::1", "dev", up, "proto", "ra", "expires", "600", "pref", "high"},
	} {
		if out, err := h.Exec(h.NS, argv...); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	// The two test routes as the kernel reports them, without the
	// lifetime left, which counts down.
	routes := func() []map[string]any {
		var out []map[string]any
		for _, r := range h.kernelRoutesOf(t, "-6") {
			if r["dst"] == "2001:db8:99::/48" || r["dst"] == "2001:db8:aa::/48" {
				delete(r, "expires")
				out = append(out, r)
			}
		}
		return out
	}
	ra := func(rs []map[string]any) []map[string]any {
		return slices.DeleteFunc(slices.Clone(rs), func(r map[string]any) bool { return r["protocol"] != "ra" })
	}
	static := func(rs []map[string]any) []map[string]any {
		return slices.DeleteFunc(slices.Clone(rs), func(r map[string]any) bool { return r["protocol"] == "ra" })
	}
	before := routes()
	if len(before) != 2 || len(ra(before)) != 1 || ra(before)[0]["pref"] != "high" {
		t.Fatalf("test routes not set up: %v", before)
	}

	if _, err := netup.Up(ctx, h.deps, cfg, netup.Options{}); err != nil {
		t.Fatalf("up: %v", err)
	}
	afterUp := routes()
	sameList(t, "static route on the bridge after up", through(t, static(afterUp), "ovsbr0"), through(t, static(before), up))
	sameList(t, "learned route after up", all(t, ra(afterUp)), all(t, ra(before)))
	if res, err := netup.Up(ctx, h.deps, cfg, netup.Options{DryRun: true}); err != nil || !res.InSync {
		t.Errorf("second up: %v %v", kinds(res.Changes), err)
	}

	if _, err := netup.Down(ctx, h.deps, netup.Options{}); err != nil {
		t.Fatalf("down: %v", err)
	}
	sameList(t, "after down", all(t, routes()), all(t, before))

	var during []map[string]any
	_, err := netup.Try(ctx, h.deps, cfg, netup.TryOptions{StateDir: t.TempDir(), Timeout: time.Millisecond,
		OnWaiting: func(netup.Result, netup.TryInfo) { during = routes() }})
	if !errors.Is(err, netup.ErrRolledBack) {
		t.Fatalf("try: %v", err)
	}
	sameList(t, "static route on the bridge during the try", through(t, static(during), "ovsbr0"), through(t, static(before), up))
	sameList(t, "after the try's rollback", all(t, routes()), all(t, before))
}
