// Package ethtool reads and switches a network interface's offload features
// through the SIOCETHTOOL ioctl (ETHTOOL_GFEATURES/SFEATURES), the same
// interface `ethtool -k/-K` uses, without running the ethtool program.
//
// It only touches the features it is asked to change and never changes a
// link's addresses, state or MTU. Features are named by ethtool's short
// names (tso, gso, gro, lro, rx, tx, rxvlan, txvlan, sg); each short name
// covers the kernel feature bits `ethtool -K` switches for it.
package ethtool

import (
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Features maps each short name to the kernel feature strings it covers,
// as ethtool's off_flag_def table does.
var Features = map[string][]string{
	"rx":     {"rx-checksum"},
	"tx":     {"tx-checksum-ipv4", "tx-checksum-ip-generic", "tx-checksum-ipv6", "tx-checksum-fcoe-crc", "tx-checksum-sctp"},
	"sg":     {"tx-scatter-gather", "tx-scatter-gather-fraglist"},
	"tso":    {"tx-tcp-segmentation", "tx-tcp-ecn-segmentation", "tx-tcp-mangleid-segmentation", "tx-tcp6-segmentation"},
	"gso":    {"tx-generic-segmentation"},
	"gro":    {"rx-gro"},
	"lro":    {"rx-lro"},
	"rxvlan": {"rx-vlan-hw-parse"},
	"txvlan": {"tx-vlan-hw-insert"},
}

// ErrUnknownFeature is returned for a short name not in Features.
var ErrUnknownFeature = errors.New("unknown offload feature")

// ErrNotApplied is wrapped by Set when the device accepted the request
// but a feature is not in the asked state afterwards.
var ErrNotApplied = errors.New("the device kept these features as they were")

// State is one short-named feature of an interface.
type State struct {
	// On is true when any covered kernel feature is active.
	On bool `json:"on"`
	// Fixed is true when the device cannot change it (or lacks it).
	Fixed bool `json:"fixed"`
}

// Client issues ethtool ioctls on a socket of the network namespace that
// was current when it was opened.
type Client struct {
	fd      int
	changes atomic.Int64
}

// Open makes a client for the calling thread's network namespace.
func Open() (*Client, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("ethtool socket: %w", err)
	}
	return &Client{fd: fd}, nil
}

// Close releases the socket.
func (c *Client) Close() error { return unix.Close(c.fd) }

// Changes counts SFEATURES calls made, so callers can prove a converged
// system is left alone.
func (c *Client) Changes() int64 { return c.changes.Load() }

type ifreq struct {
	name [unix.IFNAMSIZ]byte
	data uintptr
	_    [16]byte
}

func (c *Client) ioctl(dev string, buf []byte) error {
	if len(dev) >= unix.IFNAMSIZ {
		return fmt.Errorf("ethtool %s: interface name too long", dev)
	}
	var ifr ifreq
	copy(ifr.name[:], dev)
	ifr.data = uintptr(unsafe.Pointer(&buf[0]))
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(c.fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
	runtime.KeepAlive(buf)
	if errno != 0 {
		return errno
	}
	return nil
}

func putU32(b []byte, off int, v uint32) { *(*uint32)(unsafe.Pointer(&b[off])) = v }
func getU32(b []byte, off int) uint32    { return *(*uint32)(unsafe.Pointer(&b[off])) }

// names returns the kernel's feature strings, indexed by bit.
func (c *Client) names(dev string) ([]string, error) {
	// struct ethtool_sset_info: cmd, reserved, u64 sset_mask, u32 data[1].
	info := make([]byte, 24)
	putU32(info, 0, unix.ETHTOOL_GSSET_INFO)
	*(*uint64)(unsafe.Pointer(&info[8])) = 1 << ethSSFeatures
	if err := c.ioctl(dev, info); err != nil {
		return nil, fmt.Errorf("ethtool %s: feature count: %w", dev, err)
	}
	n := int(getU32(info, 16))
	if n == 0 || n > 1024 {
		return nil, fmt.Errorf("ethtool %s: kernel reports %d features", dev, n)
	}
	// struct ethtool_gstrings: cmd, string_set, len, data[len*32].
	gs := make([]byte, 12+n*gstringLen)
	putU32(gs, 0, unix.ETHTOOL_GSTRINGS)
	putU32(gs, 4, ethSSFeatures)
	putU32(gs, 8, uint32(n))
	if err := c.ioctl(dev, gs); err != nil {
		return nil, fmt.Errorf("ethtool %s: feature names: %w", dev, err)
	}
	out := make([]string, n)
	for i := range n {
		s := gs[12+i*gstringLen : 12+(i+1)*gstringLen]
		if j := slices.Index(s, 0); j >= 0 {
			s = s[:j]
		}
		out[i] = string(s)
	}
	return out, nil
}

// ethSSFeatures is ETH_SS_FEATURES from linux/ethtool.h.
const ethSSFeatures = 4

// gstringLen is ETH_GSTRING_LEN.
const gstringLen = 32

type block struct{ available, requested, active, neverChanged uint32 }

func (c *Client) get(dev string, n int) ([]block, error) {
	words := (n + 31) / 32
	buf := make([]byte, 8+words*16)
	putU32(buf, 0, unix.ETHTOOL_GFEATURES)
	putU32(buf, 4, uint32(words))
	if err := c.ioctl(dev, buf); err != nil {
		return nil, fmt.Errorf("ethtool %s: get features: %w", dev, err)
	}
	out := make([]block, words)
	for i := range out {
		o := 8 + i*16
		out[i] = block{getU32(buf, o), getU32(buf, o+4), getU32(buf, o+8), getU32(buf, o+12)}
	}
	return out, nil
}

func bit(bs []block, i int, f func(block) uint32) bool { return f(bs[i/32])&(1<<(i%32)) != 0 }

// Get returns the state of each short-named feature asked for.
func (c *Client) Get(dev string, short []string) (map[string]State, error) {
	names, err := c.names(dev)
	if err != nil {
		return nil, err
	}
	bs, err := c.get(dev, len(names))
	if err != nil {
		return nil, err
	}
	out := make(map[string]State, len(short))
	for _, s := range short {
		kern, ok := Features[s]
		if !ok {
			return nil, fmt.Errorf("ethtool %s: %q: %w", dev, s, ErrUnknownFeature)
		}
		st := State{Fixed: true}
		for i, name := range names {
			if !slices.Contains(kern, name) {
				continue
			}
			if bit(bs, i, func(b block) uint32 { return b.active }) {
				st.On = true
			}
			if bit(bs, i, func(b block) uint32 { return b.available }) {
				st.Fixed = false
			}
		}
		out[s] = st
	}
	return out, nil
}

// Set switches each short-named feature in want on or off. Bits the device
// cannot change are skipped; the kernel may still refuse a request (it
// reports what it could not do), so callers read the state back.
func (c *Client) Set(dev string, want map[string]bool) error {
	names, err := c.names(dev)
	if err != nil {
		return err
	}
	bs, err := c.get(dev, len(names))
	if err != nil {
		return err
	}
	words := len(bs)
	buf := make([]byte, 8+words*8)
	putU32(buf, 0, unix.ETHTOOL_SFEATURES)
	putU32(buf, 4, uint32(words))
	touched := map[int]bool{} // kernel feature index -> wanted state
	for s, on := range want {
		kern, ok := Features[s]
		if !ok {
			return fmt.Errorf("ethtool %s: %q: %w", dev, s, ErrUnknownFeature)
		}
		for i, name := range names {
			if !slices.Contains(kern, name) || !bit(bs, i, func(b block) uint32 { return b.available }) {
				continue
			}
			o := 8 + (i/32)*8
			putU32(buf, o, getU32(buf, o)|1<<(i%32))
			if on {
				putU32(buf, o+4, getU32(buf, o+4)|1<<(i%32))
			}
			touched[i] = on
		}
	}
	if len(touched) == 0 {
		return nil
	}
	c.changes.Add(1)
	if err := c.ioctl(dev, buf); err != nil {
		return fmt.Errorf("ethtool %s: set %s: %w", dev, describe(want), err)
	}
	// The driver may keep a feature as it was (a dependency such as
	// TSO needing checksumming, or firmware saying no) and still
	// return success: read back what it did.
	if bs, err = c.get(dev, len(names)); err != nil {
		return err
	}
	var stuck []string
	for _, i := range slices.Sorted(maps.Keys(touched)) {
		if bit(bs, i, func(b block) uint32 { return b.active }) != touched[i] {
			stuck = append(stuck, names[i])
		}
	}
	if len(stuck) > 0 {
		return fmt.Errorf("ethtool %s: set %s: %w: %s", dev, describe(want), ErrNotApplied, strings.Join(stuck, ", "))
	}
	return nil
}

func describe(want map[string]bool) string {
	var parts []string
	for s, on := range want {
		v := "off"
		if on {
			v = "on"
		}
		parts = append(parts, s+" "+v)
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

// ShortNames lists the known short names, sorted.
func ShortNames() []string {
	out := make([]string, 0, len(Features))
	for k := range Features {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
