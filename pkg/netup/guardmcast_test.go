package netup_test

import (
	"bytes"
	"context"
	"net"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ghostbridge/ghostbridge/pkg/netup"
)

// TestGuardBroadcastMulticast: broadcast and multicast frames from an
// internal port, with a foreign or with an allowed source MAC, never reach
// the provider's side of the uplink; the allowed MAC's unicast does, and
// ARP for the host's own address still works.
func TestGuardBroadcastMulticast(t *testing.T) {
	h := newHost(t)
	ctx := context.Background()
	allowed, _ := net.ParseMAC("02:00:00:00:00:aa")
	foreign, _ := net.ParseMAC("02:00:00:00:00:99")
	cfg := h.config()
	cfg.Bridges[0].AllowMACs = []string{allowed.String()}
	if _, err := netup.Up(ctx, h.deps, cfg, netup.Options{}); err != nil {
		t.Fatal(err)
	}
	h.quietInternal(t, allowed.String())
	rfd, peerMAC := h.listenPeer(t)

	bcast, _ := net.ParseMAC("ff:ff:ff:ff:ff:ff")
	mcast, _ := net.ParseMAC("01:00:5e:00:00:fb")
	for _, f := range []struct {
		src, dst net.HardwareAddr
		marker   string
	}{
		{foreign, bcast, "foreign-bcast"}, {foreign, mcast, "foreign-mcast"},
		{allowed, bcast, "allowed-bcast"}, {allowed, mcast, "allowed-mcast"},
	} {
		sendFrame(t, h.Handle, "gbint0", f.src, f.dst, f.marker)
	}
	// Frames from one port are switched in order: once the allowed
	// unicast frame sent last arrives, the ones before it were handled.
	sendFrame(t, h.Handle, "gbint0", allowed, peerMAC, "allowed-unicast")
	buf := make([]byte, 2048)
	for done := false; !done; {
		n, _, err := unix.Recvfrom(rfd, buf, 0)
		if err != nil {
			t.Fatalf("the allowed MAC's unicast frame never reached the peer: %v\n%s", err, h.Log())
		}
		for _, m := range []string{"foreign-bcast", "foreign-mcast", "allowed-bcast", "allowed-mcast"} {
			if bytes.Contains(buf[:n], []byte("ghostbridge-"+m+"\x00")) {
				t.Errorf("frame %s left through the uplink", m)
			}
		}
		done = bytes.Contains(buf[:n], []byte("ghostbridge-allowed-unicast"))
	}
	// ARP for the host's own address: the peer forgets it and asks again.
	if out, err := h.Exec(h.Peer, "ip", "neigh", "flush", "all"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	h.ping(t, h.Peer, h.UplinkAddr.Addr().String())
}
