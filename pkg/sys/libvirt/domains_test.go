package libvirt

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/ghostbridge/ghostbridge/internal/testenv"
	"github.com/ghostbridge/ghostbridge/pkg/vm"
)

// testDriver starts a private libvirtd and connects to its test driver,
// which comes with one running guest, "test". The connection is held for
// the test: the driver forgets its guests when its last client leaves.
func testDriver(t *testing.T) (*testenv.Libvirtd, *Conn) {
	t.Helper()
	d := testenv.StartLibvirtd(t)
	c, err := Dial(t.Context(), d.TestURI)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return d, c
}

func defineGuests(t *testing.T, d *testenv.Libvirtd, names ...string) {
	t.Helper()
	for _, n := range names {
		x := filepath.Join(t.TempDir(), n+".xml")
		text := `<domain type='test'><name>` + n + `</name><memory>8192</memory><os><type>hvm</type></os></domain>`
		if err := os.WriteFile(x, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := d.Virsh(d.TestURI, "define", x); err != nil {
			t.Fatalf("virsh define %s: %v %s", n, err, out)
		}
	}
}

func names(doms []vm.DomainInfo) []string {
	out := make([]string, 0, len(doms))
	for _, di := range doms {
		out = append(out, di.Name)
	}
	slices.Sort(out)
	return out
}

// TestDomainsPerGuestErrors checks one guest's failure does not fail the
// listing: a guest undefined between the listing and its XML fetch is left
// out, one whose XML cannot be fetched is returned with Err, state and
// autostart, and the others are whole.
func TestDomainsPerGuestErrors(t *testing.T) {
	d, c := testDriver(t)
	defineGuests(t, d, "fine", "vanishing", "broken")
	if out, err := d.Virsh(d.TestURI, "autostart", "broken"); err != nil {
		t.Fatalf("virsh autostart: %v %s", err, out)
	}
	boom := golibvirt.Error{Code: uint32(golibvirt.ErrInternalError), Message: "injected: XML fetch failed"}
	c.xmlDesc = func(dom golibvirt.Domain, flags golibvirt.DomainXMLFlags) (string, error) {
		switch dom.Name {
		case "vanishing":
			// Really undefined, so the fetch below meets libvirt's
			// own "no domain" error.
			if out, err := d.Virsh(d.TestURI, "undefine", "vanishing"); err != nil {
				t.Errorf("virsh undefine: %v %s", err, out)
			}
		case "broken":
			return "", boom
		}
		return c.l.DomainGetXMLDesc(dom, flags)
	}
	doms, err := c.Domains(t.Context())
	if err != nil {
		t.Fatalf("Domains: %v; want the guests it could read", err)
	}
	if got := names(doms); !slices.Equal(got, []string{"broken", "fine", "test"}) {
		t.Fatalf("Domains = %v; want broken, fine, test (vanishing dropped)", got)
	}
	for _, di := range doms {
		switch di.Name {
		case "broken":
			if !errors.Is(di.Err, boom) || di.State != "shut off" || !di.Autostart || di.XML != "" {
				t.Errorf("broken = %+v; want Err, its state and autostart", di)
			}
		default:
			if di.Err != nil || di.XML == "" {
				t.Errorf("%s = %+v; want it whole", di.Name, di)
			}
		}
	}
}

// TestDomainsWithoutStats checks the fallback for drivers that lack the
// all-domain stats call (VIR_ERR_NO_SUPPORT): a listing and a state call per
// guest give the same answer.
func TestDomainsWithoutStats(t *testing.T) {
	d, c := testDriver(t)
	defineGuests(t, d, "idle")
	want, err := c.Domains(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	c.allStats = func([]golibvirt.Domain, uint32, uint32) ([]golibvirt.DomainStatsRecord, error) {
		calls++
		return nil, golibvirt.Error{Code: uint32(golibvirt.ErrNoSupport), Message: "this function is not supported by the connection driver"}
	}
	got, err := c.Domains(t.Context())
	if err != nil || calls != 1 {
		t.Fatalf("Domains without the stats call: %v (stats called %d times)", err, calls)
	}
	byName := func(doms []vm.DomainInfo) map[string]vm.DomainInfo {
		m := map[string]vm.DomainInfo{}
		for _, di := range doms {
			m[di.Name] = di
		}
		return m
	}
	w, g := byName(want), byName(got)
	if len(w) != 2 || len(g) != len(w) {
		t.Fatalf("got %v, want %v", names(got), names(want))
	}
	for n, di := range w {
		if g[n] != di {
			t.Errorf("%s: fallback %+v, stats %+v", n, g[n], di)
		}
	}
	if g["test"].State != "running" || g["idle"].State != "shut off" {
		t.Errorf("states: test %q, idle %q", g["test"].State, g["idle"].State)
	}
}

// TestGoneAfterLookup checks a guest that goes away after it was looked up
// (a transient guest that shut down) is reported as vm.ErrNotFound by the
// reads that follow the lookup, as by the lookup itself.
func TestGoneAfterLookup(t *testing.T) {
	d, c := testDriver(t)
	defineGuests(t, d, "brief")
	dom, err := c.lookup(t.Context(), "brief")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := d.Virsh(d.TestURI, "undefine", "brief"); err != nil {
		t.Fatalf("virsh undefine: %v %s", err, out)
	}
	if _, err := c.info(dom); !errors.Is(err, vm.ErrNotFound) {
		t.Errorf("info of a guest gone since its lookup: %v; want vm.ErrNotFound", err)
	}
	if _, err := c.DomainState(t.Context(), "brief"); !errors.Is(err, vm.ErrNotFound) {
		t.Errorf("DomainState of a missing guest: %v; want vm.ErrNotFound", err)
	}
}
