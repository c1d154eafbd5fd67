package ethtool_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/ghostbridge/ghostbridge/internal/testenv"
	"github.com/ghostbridge/ghostbridge/pkg/sys/ethtool"
	"github.com/ghostbridge/ghostbridge/pkg/sys/netdev"
)

// TestSetGetAgreesWithEthtool switches veth offloads through the ioctl and
// checks the result with the ethtool program.
func TestSetGetAgreesWithEthtool(t *testing.T) {
	h := testenv.OVS(t)
	var c *ethtool.Client
	if err := netdev.Do(h.Handle, func() (err error) { c, err = ethtool.Open(); return err }); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, on := range []bool{false, true, false} {
		if err := c.Set(h.Uplink, map[string]bool{"tso": on, "gro": on}); err != nil {
			t.Fatal(err)
		}
		got, err := c.Get(h.Uplink, []string{"tso", "gro"})
		if err != nil {
			t.Fatal(err)
		}
		if got["tso"].On != on || got["gro"].On != on || got["tso"].Fixed {
			t.Errorf("after set %v: %+v", on, got)
		}
		out, err := h.Exec(h.NS, "ethtool", "-k", h.Uplink)
		if err != nil {
			testenv.Skip(t, "ethtool program: "+err.Error())
		}
		want := "generic-receive-offload: off"
		if on {
			want = "generic-receive-offload: on"
		}
		if !strings.Contains(out, want) {
			t.Errorf("ethtool -k lacks %q:\n%s", want, out)
		}
	}
	if _, err := c.Get(h.Uplink, []string{"warp"}); !errors.Is(err, ethtool.ErrUnknownFeature) {
		t.Errorf("unknown feature: %v", err)
	}
	if _, err := c.Get("nosuchdev0", []string{"tso"}); err == nil {
		t.Error("no error for a missing device")
	}
	if c.Changes() != 3 {
		t.Errorf("changes = %d, want 3", c.Changes())
	}
}

// TestSetReadsBack: with checksumming off the kernel keeps TSO off
// whatever is asked, yet the ioctl succeeds; Set must say so.
func TestSetReadsBack(t *testing.T) {
	h := testenv.OVS(t)
	var c *ethtool.Client
	if err := netdev.Do(h.Handle, func() (err error) { c, err = ethtool.Open(); return err }); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Set(h.Uplink, map[string]bool{"tx": false, "tso": false}); err != nil {
		t.Fatal(err)
	}
	err := c.Set(h.Uplink, map[string]bool{"tso": true})
	if !errors.Is(err, ethtool.ErrNotApplied) {
		t.Fatalf("tso on without checksumming: %v, want ErrNotApplied", err)
	}
	t.Log(err)
	if err := c.Set(h.Uplink, map[string]bool{"tx": true, "tso": true}); err != nil {
		t.Errorf("tx and tso on together: %v", err)
	}
}
