package diag

import (
	"net/netip"
	"strings"
	"testing"
)

// A real /proc/net/tcp6 and tcp table as a little-endian machine prints it.
const procNetTCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:2603 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:2604 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 100 0 0 10 0
   2: B80D0120000000000000000001000000:0016 B80D0120000000000000000002000000:C350 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000 100 0 0 10 0
`

const procNetTCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:2603 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4 1 0000000000000000 100 0 0 10 0
   1: 0500000A:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5 1 0000000000000000 100 0 0 10 0
`

func TestParseProcNetTCP(t *testing.T) {
	got4, err := parseProcNetTCP(strings.NewReader(procNetTCP))
	if err != nil {
		t.Fatal(err)
	}
	got6, err := parseProcNetTCP(strings.NewReader(procNetTCP6))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range append(got4, got6...) {
		got = append(got, a.String())
	}
	// The established IPv6 socket (st 01) is not listed.
	want := "127.0.0.1:9731 10.0.0.5:22 [::]:9731 [::1]:9732"
	if strings.Join(got, " ") != want {
		t.Errorf("parsed %v, want %s", got, want)
	}
}

func FuzzParseProcNetTCP(f *testing.F) {
	f.Add(procNetTCP)
	f.Add(procNetTCP6)
	f.Add("header\n 0: 0100007F:ZZZZ 0 0A\n")
	f.Fuzz(func(t *testing.T, s string) {
		as, err := parseProcNetTCP(strings.NewReader(s))
		if err != nil {
			return
		}
		for _, a := range as {
			if !a.IsValid() || (!a.Addr().Is4() && !a.Addr().Is6()) {
				t.Fatalf("invalid address %v from %q", a, s)
			}
			_ = netip.AddrPortFrom(a.Addr(), a.Port())
		}
	})
}
