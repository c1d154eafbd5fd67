package testenv

import (
	"os"
	"strings"
	"testing"
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
