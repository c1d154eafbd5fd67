package netup_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/ghostbridge/ghostbridge/pkg/netup"
	"github.com/ghostbridge/ghostbridge/pkg/sys/netdev"
)

// etherTest is the IEEE local experimental EtherType: nothing else on the
// test wire uses it.
const etherTest = 0x88b5

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// sendFrame puts one raw Ethernet frame on dev inside ns.
func sendFrame(t *testing.T, ns netns.NsHandle, dev string, src, dst net.HardwareAddr, marker string) {
	t.Helper()
	err := netdev.Do(ns, func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		frame := make([]byte, 60)
		copy(frame[0:6], dst)
		copy(frame[6:12], src)
		binary.BigEndian.PutUint16(frame[12:14], etherTest)
		copy(frame[14:], "ghostbridge-"+marker)
		sa := &unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6, Protocol: htons(etherTest)}
		copy(sa.Addr[:], dst)
		return unix.Sendto(fd, frame, 0, sa)
	})
	if err != nil {
		t.Fatalf("send on %s: %v", dev, err)
	}
}

// quietInternal turns IPv6 off on the internal port gbint0, so it sends
// nothing of its own, and brings it up with the given MAC.
func (h *host) quietInternal(t *testing.T, mac string) {
	t.Helper()
	for _, argv := range [][]string{
		{"sysctl", "-q", "-w", "net.ipv6.conf.gbint0.disable_ipv6=1"},
		{"ip", "link", "set", "gbint0", "address", mac, "up"},
	} {
		if out, err := h.Exec(h.NS, argv...); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
}

// listenPeer opens a raw socket for test frames on the provider's side
// of the uplink, with a 10 s receive timeout, closed when the test ends;
// it returns the socket and the peer interface's MAC.
func (h *host) listenPeer(t *testing.T) (int, net.HardwareAddr) {
	t.Helper()
	peerNS, err := netns.GetFromName(h.Peer)
	if err != nil {
		t.Fatal(err)
	}
	defer peerNS.Close()
	var rfd int
	var peerMAC net.HardwareAddr
	err = netdev.Do(peerNS, func() error {
		ifi, err := net.InterfaceByName(h.PeerIf)
		if err != nil {
			return err
		}
		peerMAC = ifi.HardwareAddr
		if rfd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(etherTest))); err != nil {
			return err
		}
		if err := unix.SetsockoptTimeval(rfd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 10}); err != nil {
			return err
		}
		return unix.Bind(rfd, &unix.SockaddrLinklayer{Ifindex: ifi.Index, Protocol: htons(etherTest)})
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(rfd) })
	return rfd, peerMAC
}

// TestGuardOnTheWire: a frame with a foreign source MAC sent from an
// internal port never reaches the provider's side of the uplink, while
// the host's own frame does.
func TestGuardOnTheWire(t *testing.T) {
	h := newHost(t)
	ctx := context.Background()
	cfg := h.config()
	if _, err := netup.Up(ctx, h.deps, cfg, netup.Options{}); err != nil {
		t.Fatal(err)
	}
	// Quiet the internal port so the drop flow counts only our frame.
	h.quietInternal(t, "02:00:00:00:00:99")
	rfd, peerMAC := h.listenPeer(t)

	dropped := func() uint64 {
		fs, err := h.ovs.DumpFlows(ctx, "ovsbr0")
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fs {
			if strings.HasPrefix(f.Text, "priority=1 ") && strings.HasSuffix(f.Text, "actions=drop") {
				return f.Packets
			}
		}
		t.Fatalf("no drop flow in %v", fs)
		return 0
	}
	foreign, _ := net.ParseMAC("02:00:00:00:00:99")
	d0 := dropped()
	sendFrame(t, h.Handle, "gbint0", foreign, peerMAC, "foreign")
	// Wait until the switch has handled (dropped) it before the host
	// speaks, so the host's frame arriving first proves nothing leaked.
	for i := 0; dropped() == d0; i++ {
		if i == 200 {
			t.Fatalf("drop flow never counted the foreign frame\n%s", h.Log())
		}
		time.Sleep(25 * time.Millisecond)
	}
	links, err := h.nl.Links()
	if err != nil {
		t.Fatal(err)
	}
	var hostMAC net.HardwareAddr
	for _, l := range links {
		if l.Name == "ovsbr0" {
			hostMAC, _ = net.ParseMAC(l.MAC)
		}
	}
	sendFrame(t, h.Handle, "ovsbr0", hostMAC, peerMAC, "host")
	buf := make([]byte, 2048)
	for {
		n, _, err := unix.Recvfrom(rfd, buf, 0)
		if err != nil {
			t.Fatalf("host frame never reached the peer: %v", err)
		}
		switch {
		case bytes.Contains(buf[:n], []byte("ghostbridge-foreign")):
			t.Fatal("a frame with a foreign source MAC left through the uplink")
		case bytes.Contains(buf[:n], []byte("ghostbridge-host")):
			if !bytes.Equal(buf[6:12], hostMAC) {
				t.Errorf("host frame arrived with source %s, want %s", net.HardwareAddr(buf[6:12]), hostMAC)
			}
			return
		}
	}
}
