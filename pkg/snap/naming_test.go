package snap

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSnapshotPathRoundTrip(t *testing.T) {
	at := time.Date(2025, 3, 9, 7, 5, 4, 123_456_789, time.FixedZone("X", 3600))
	p := SnapshotPath("/snaps", "home", at)
	if want := "/snaps/home/20250309T060504.123Z"; p != want {
		t.Fatalf("SnapshotPath = %q, want %q", p, want)
	}
	got, err := ParseName(filepath.Base(p))
	if err != nil {
		t.Fatal(err)
	}
	if want := at.Truncate(time.Millisecond).UTC(); !got.Equal(want) || got.Location() != time.UTC {
		t.Errorf("ParseName = %v, want %v UTC", got, want)
	}
	if SourceDir("/snaps", "home") != filepath.Dir(p) {
		t.Errorf("SourceDir %q is not the parent of %q", SourceDir("/snaps", "home"), p)
	}
}

func TestNamesSortInTimeOrder(t *testing.T) {
	base := time.Date(2025, 12, 31, 23, 59, 59, 998_000_000, time.UTC)
	prev := ""
	for i := range 5 {
		n := filepath.Base(SnapshotPath("/d", "s", base.Add(time.Duration(i)*time.Millisecond)))
		if n <= prev {
			t.Errorf("%q does not sort after %q", n, prev)
		}
		prev = n
	}
}

func TestParseNameRejects(t *testing.T) {
	for _, name := range []string{
		"", "manual", "20250309T060504Z", "20250309T060504.12Z", "20250309T060504.1234Z",
		"20250309T060504.123", "20250309t060504.123Z", "20251309T060504.123Z",
		"2025-03-09T06:05:04.123Z", " 20250309T060504.123Z", "20250309T060504.123Z.tmp",
	} {
		if _, err := ParseName(name); err == nil {
			t.Errorf("ParseName(%q) accepted", name)
		}
	}
}

func FuzzParseName(f *testing.F) {
	f.Add("20250309T060504.123Z")
	f.Add("20000101T000000.000Z")
	f.Add("x")
	f.Fuzz(func(t *testing.T, name string) {
		at, err := ParseName(name)
		if err != nil {
			return
		}
		// Only canonical names parse: writing back gives the same name.
		if back := filepath.Base(SnapshotPath("/d", "s", at)); back != name {
			t.Fatalf("ParseName(%q) = %v, written back as %q", name, at, back)
		}
	})
}

func TestParseSource(t *testing.T) {
	tests := []struct {
		spec, name, path string
	}{
		{"/", "root", "/"},
		{"/home", "home", "/home"},
		{"/mnt/@home/", "@home", "/mnt/@home"},
		{"data=/srv/data", "data", "/srv/data"},
		{"x.y_z-1@=/a//b/../c", "x.y_z-1@", "/a/c"},
		{"/mnt/a=b", "a=b", "/mnt/a=b"}, // "/mnt/a" is no name: the whole spec is a path
		{"root=/", "root", "/"},
		{"./a b=/x", "x", ""}, // a relative path with "=" in it
	}
	for _, tt := range tests {
		got, err := ParseSource(tt.spec)
		if err != nil {
			if tt.name == "a=b" && errors.Is(err, ErrInvalidConfig) {
				continue // a base name with "=" is not a valid name: reported, checked below
			}
			t.Errorf("ParseSource(%q): %v", tt.spec, err)
			continue
		}
		if got.Name != tt.name || (tt.path != "" && got.Path != tt.path) {
			t.Errorf("ParseSource(%q) = %+v, want {%s %s}", tt.spec, got, tt.name, tt.path)
		}
	}
	if _, err := ParseSource("/mnt/a=b"); err == nil || !strings.Contains(err.Error(), "NAME=PATH") {
		t.Errorf("ParseSource(/mnt/a=b) = %v, want an error suggesting NAME=PATH", err)
	}
	rel, err := ParseSource("sub")
	if err != nil || !filepath.IsAbs(rel.Path) || rel.Name != "sub" {
		t.Errorf("ParseSource(sub) = %+v, %v; want an absolute path named sub", rel, err)
	}
	for _, bad := range []string{"", "name=", "=", "=/x", "/mnt/x y", "n@me!=/x", "a b=/x", "..=/x"} {
		_, err := ParseSource(bad)
		if !errors.Is(err, ErrInvalidConfig) || strings.Contains(err.Error(), "\n") {
			t.Errorf("ParseSource(%q) = %v, want one line wrapping ErrInvalidConfig", bad, err)
		}
	}
}

func FuzzParseSource(f *testing.F) {
	for _, s := range []string{"/", "/home", "a=/b", "=", "a=b=c", "..", "x/../.."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		s, err := ParseSource(spec)
		if err != nil {
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("ParseSource(%q): error %v does not wrap ErrInvalidConfig", spec, err)
			}
			return
		}
		if !validName(s.Name) || !filepath.IsAbs(s.Path) || filepath.Clean(s.Path) != s.Path {
			t.Fatalf("ParseSource(%q) = %+v: bad name or unclean path", spec, s)
		}
		if strings.ContainsRune(s.Name, '/') {
			t.Fatalf("ParseSource(%q): name %q would escape the snapshot dir", spec, s.Name)
		}
	})
}
