package vm

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"net"
	"strconv"
	"strings"
)

// ErrInvalidConfig is wrapped by every error about a value the operator
// gave: a size, a PCI address, a name, a bridge, a device.
var ErrInvalidConfig = errors.New("invalid vm configuration")

var sizeUnits = map[string]uint64{
	"": 1, "b": 1,
	"k": 1 << 10, "kib": 1 << 10, "kb": 1000,
	"m": 1 << 20, "mib": 1 << 20, "mb": 1000 * 1000,
	"g": 1 << 30, "gib": 1 << 30, "gb": 1000 * 1000 * 1000,
	"t": 1 << 40, "tib": 1 << 40, "tb": 1000 * 1000 * 1000 * 1000,
}

// ParseSize reads a byte size as operators write it: "2GiB", "512MiB",
// "20G" (binary: G means GiB, as in qemu-img), "1.5GiB", "10GB" (decimal).
// A bare number is bytes. The result must be greater than zero.
func ParseSize(s string) (uint64, error) {
	in := strings.TrimSpace(s)
	i := 0
	for i < len(in) && (in[i] >= '0' && in[i] <= '9' || in[i] == '.') {
		i++
	}
	num, unit := in[:i], strings.ToLower(strings.TrimSpace(in[i:]))
	mult, ok := sizeUnits[unit]
	if num == "" || !ok {
		return 0, fmt.Errorf("%w: size %q: want a number and a unit such as 512MiB or 2GiB", ErrInvalidConfig, s)
	}
	var n uint64
	if strings.Contains(num, ".") {
		f, err := strconv.ParseFloat(num, 64)
		if err != nil || f*float64(mult) >= math.MaxUint64/2 {
			return 0, fmt.Errorf("%w: size %q: want a number and a unit such as 512MiB or 2GiB", ErrInvalidConfig, s)
		}
		n = uint64(f * float64(mult))
	} else {
		v, err := strconv.ParseUint(num, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%w: size %q: want a number and a unit such as 512MiB or 2GiB", ErrInvalidConfig, s)
		}
		hi, lo := bits.Mul64(v, mult)
		if hi != 0 {
			return 0, fmt.Errorf("%w: size %q: too large", ErrInvalidConfig, s)
		}
		n = lo
	}
	if n == 0 {
		return 0, fmt.Errorf("%w: size %q: want more than 0 bytes", ErrInvalidConfig, s)
	}
	return n, nil
}

// FormatSize renders n in the largest binary unit that divides it exactly.
func FormatSize(n uint64) string {
	for _, u := range []struct {
		name string
		v    uint64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.v && n%u.v == 0 {
			return strconv.FormatUint(n/u.v, 10) + u.name
		}
	}
	return strconv.FormatUint(n, 10) + "B"
}

// PCIAddress is a PCI function: domain:bus:slot.function.
type PCIAddress struct {
	Domain   uint16 `json:"domain"`
	Bus      uint8  `json:"bus"`
	Slot     uint8  `json:"slot"`
	Function uint8  `json:"function"`
}

// String formats the address as sysfs names it, e.g. "0000:01:00.0".
func (a PCIAddress) String() string {
	return fmt.Sprintf("%04x:%02x:%02x.%x", a.Domain, a.Bus, a.Slot, a.Function)
}

// ParsePCIAddress reads "0000:01:00.0" or the short "01:00.0" (domain 0),
// hexadecimal as lspci prints it. Slot is 0..1f and function 0..7.
func ParsePCIAddress(s string) (PCIAddress, error) {
	bad := func(why string) (PCIAddress, error) {
		return PCIAddress{}, fmt.Errorf("%w: PCI address %q: %s; want DOMAIN:BUS:SLOT.FUNCTION such as 0000:01:00.0", ErrInvalidConfig, s, why)
	}
	parts := strings.Split(s, ":")
	if len(parts) == 2 {
		parts = append([]string{"0000"}, parts...)
	}
	if len(parts) != 3 {
		return bad("wrong number of fields")
	}
	slot, fn, ok := strings.Cut(parts[2], ".")
	if !ok {
		return bad("no function")
	}
	field := func(v string, width int, max uint64) (uint64, bool) {
		if len(v) == 0 || len(v) > width {
			return 0, false
		}
		n, err := strconv.ParseUint(v, 16, 64)
		return n, err == nil && n <= max
	}
	d, ok1 := field(parts[0], 4, 0xffff)
	b, ok2 := field(parts[1], 2, 0xff)
	sl, ok3 := field(slot, 2, 0x1f)
	f, ok4 := field(fn, 1, 7)
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return bad("field out of range")
	}
	return PCIAddress{Domain: uint16(d), Bus: uint8(b), Slot: uint8(sl), Function: uint8(f)}, nil
}

// MAC returns the NIC's MAC address, derived from the VM name and the NIC
// index so that re-creating a guest gives it the same addresses (and the
// same DHCP leases, and the same entries in a MAC allow-list on the
// uplink). The address is unicast and locally administered, so it never
// collides with a vendor's.
func MAC(name string, index int) net.HardwareAddr {
	h := sha256.Sum256([]byte(fmt.Sprintf("ghostbridge/vm/%s/nic/%d", name, index)))
	mac := net.HardwareAddr(h[:6])
	mac[0] = mac[0]&^0x01 | 0x02
	return mac
}
