package testenv

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/ghostbridge/ghostbridge/pkg/sys/netdev"
)

// TestOVSHost starts a scratch OVS host and checks that it works and that
// nothing of it survives the test.
func TestOVSHost(t *testing.T) {
	var h *OVSHost
	t.Run("start", func(t *testing.T) {
		h = OVS(t)
		if _, err := h.Vsctl("add-br", "br0", "--", "set", "bridge", "br0", "datapath_type=netdev"); err != nil {
			t.Fatal(err)
		}
		out, err := h.Exec(h.NS, "ip", "-br", "addr", "show", "dev", h.Uplink)
		if err != nil || !strings.Contains(out, h.UplinkAddr.String()) {
			t.Fatalf("uplink: %q %v", out, err)
		}
		if out, err := h.Exec(h.NS, "ip", "link", "show", "br0"); err != nil {
			t.Fatalf("bridge device not in the namespace: %v %s", err, out)
		}
		if out, err := h.Exec(h.Peer, "ping", "-c", "1", "-W", "5", h.UplinkAddr.Addr().String()); err != nil {
			t.Fatalf("peer cannot reach the uplink: %v %s", err, out)
		}
		// The adapters see the namespace, not the machine's: the uplink
		// and the bridge exist only there.
		a := h.Adapters(t)
		links, err := a.Links.Links()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(links, func(l netdev.Link) bool { return l.Name == h.Uplink }) {
			t.Errorf("netlink adapter does not see %s: %+v", h.Uplink, links)
		}
		if _, err := a.Offloads.Get(h.Uplink, []string{"gro"}); err != nil {
			t.Errorf("ethtool adapter: %v", err)
		}
		if brs, err := a.OVS.Bridges(t.Context()); err != nil || len(brs) != 1 {
			t.Errorf("OVS adapter: bridges %v, %v; want br0 only", brs, err)
		} else if _, ok := brs["br0"]; !ok {
			t.Errorf("OVS adapter: bridges %v, want br0", brs)
		}
		if _, err := h.Exec(h.NS, "sysctl", "-w", "net.ipv4.ip_forward=1"); err != nil {
			t.Fatal(err)
		}
		if v, err := a.Sysctl.Get("net.ipv4.ip_forward"); err != nil || v != "1" {
			t.Errorf("sysctl adapter: net.ipv4.ip_forward = %q, %v; want 1 as set in the namespace", v, err)
		}
	})
	if h == nil {
		return
	}
	if _, err := os.Stat(h.Dir); !os.IsNotExist(err) {
		t.Errorf("%s left behind: %v", h.Dir, err)
	}
	out, err := run("ip", "netns", "list")
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{h.NS, h.Peer} {
		if strings.Contains(out, ns) {
			t.Errorf("namespace %s left behind", ns)
		}
	}
}
