package vm

import (
	"errors"
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
	}{
		{"2GiB", 2 << 30}, {"512MiB", 512 << 20}, {"20G", 20 << 30}, {"1.5GiB", 3 << 29},
		{"10GB", 10e9}, {"4096", 4096}, {" 1 TiB ", 1 << 40}, {"64k", 64 << 10},
	} {
		got, err := ParseSize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"lots", "", "GiB", "0", "0MiB", "-1GiB", "2XB", "99999999999999999999", "16777216TiB", "1.2.3G"} {
		if _, err := ParseSize(in); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("ParseSize(%q) error = %v, want ErrInvalidConfig", in, err)
		}
	}
}

func TestParsePCIAddress(t *testing.T) {
	for in, want := range map[string]string{
		"0000:01:00.0": "0000:01:00.0", "01:00.1": "0000:01:00.1", "000a:ff:1f.7": "000a:ff:1f.7", "0000:0A:00.0": "0000:0a:00.0",
	} {
		a, err := ParsePCIAddress(in)
		if err != nil || a.String() != want {
			t.Errorf("ParsePCIAddress(%q) = %v, %v; want %s", in, a, err, want)
		}
	}
	for _, in := range []string{"", "01:00", "0000:01:00.8", "0000:01:20.0", "00000:01:00.0", "0000:100:00.0", "zz:00.0", "0000:01:00.0.0", "0000:01:00.", "1:2:3:4.0"} {
		if _, err := ParsePCIAddress(in); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("ParsePCIAddress(%q) error = %v, want ErrInvalidConfig", in, err)
		}
	}
}

func TestMAC(t *testing.T) {
	seen := map[string]bool{}
	for _, name := range []string{"web", "db", "web2"} {
		for i := range 4 {
			m := MAC(name, i)
			if m[0]&0x02 == 0 || m[0]&0x01 != 0 {
				t.Errorf("MAC(%s,%d) = %s: want unicast, locally administered", name, i, m)
			}
			if seen[m.String()] {
				t.Errorf("MAC(%s,%d) = %s repeats", name, i, m)
			}
			seen[m.String()] = true
			if MAC(name, i).String() != m.String() {
				t.Errorf("MAC(%s,%d) not deterministic", name, i)
			}
		}
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"2GiB", "512MiB", "1.5G", "lots", "0", "18446744073709551615", "1e9G"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidConfig) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("ParseSize(%q): bad error %v", s, err)
			}
			return
		}
		if n == 0 {
			t.Fatalf("ParseSize(%q) = 0 without error", s)
		}
		back, err := ParseSize(FormatSize(n))
		if err != nil || back != n {
			t.Fatalf("round trip of %d via %q = %d, %v", n, FormatSize(n), back, err)
		}
	})
}

func FuzzParsePCIAddress(f *testing.F) {
	for _, s := range []string{"0000:01:00.0", "01:00.0", "ffff:ff:1f.7", "0000:01:00.8", ":::."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParsePCIAddress(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("ParsePCIAddress(%q): bad error %v", s, err)
			}
			return
		}
		b, err := ParsePCIAddress(a.String())
		if err != nil || b != a {
			t.Fatalf("round trip of %q via %q = %v, %v", s, a.String(), b, err)
		}
	})
}
