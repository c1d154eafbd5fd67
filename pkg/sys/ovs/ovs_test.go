package ovs_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/ghostbridge/ghostbridge/internal/testenv"
	"github.com/ghostbridge/ghostbridge/pkg/sys/ovs"
)

func TestTransactObserveFlows(t *testing.T) {
	h := testenv.OVS(t)
	ctx := context.Background()
	c := ovs.New(h.DB)
	err := c.Transact(ctx,
		ovs.AddBridge("br0"), ovs.SetBridge("br0", "datapath_type=netdev", "fail_mode=secure", `external_ids:k="a,b:c"`),
		ovs.AddPort("br0", "p1"), ovs.SetInterface("p1", "type=internal"), ovs.SetPort("p1", "tag=7"))
	if err != nil {
		t.Fatal(err)
	}
	brs, err := c.Bridges(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b := brs["br0"]
	if b.FailMode != "secure" || b.DatapathType != "netdev" || b.ExternalIDs["k"] != "a,b:c" {
		t.Errorf("bridge %+v", b)
	}
	if p := b.Ports["p1"]; p.Tag != 7 || p.Type != "internal" || p.OFPort <= 0 {
		t.Errorf("port %+v", p)
	}
	flows := []string{"priority=10,in_port=LOCAL,actions=NORMAL", "priority=1,actions=drop"}
	if ok, diff, err := c.FlowsMatch(ctx, "br0", flows); err != nil || ok || len(diff) != 2 {
		t.Fatalf("before replace: ok %v diff %v err %v", ok, diff, err)
	}
	if err := c.ReplaceFlows(ctx, "br0", flows); err != nil {
		t.Fatal(err)
	}
	if ok, diff, err := c.FlowsMatch(ctx, "br0", flows); err != nil || !ok {
		t.Fatalf("after replace: ok %v diff %v err %v", ok, diff, err)
	}
	dump, err := c.DumpFlows(ctx, "br0")
	if err != nil || len(dump) != 2 {
		t.Fatalf("dump %v %v", dump, err)
	}
	if c.Mutations() != 2 {
		t.Errorf("mutations = %d, want 2", c.Mutations())
	}
	// A rejected flow-mod leaves the table as it was.
	if err := c.ReplaceFlows(ctx, "br0", []string{"priority=5,bogus=1,actions=drop"}); err == nil {
		t.Fatal("bad flow accepted")
	}
	if ok, _, err := c.FlowsMatch(ctx, "br0", flows); err != nil || !ok {
		t.Errorf("table changed by a rejected replace: %v", err)
	}
	err = c.ParseFlow(ctx, "priority=5,bogus=1,actions=drop")
	var ce *ovs.CommandError
	if !errors.As(err, &ce) || !strings.Contains(ce.Stderr, "bogus") {
		t.Errorf("ParseFlow error %v: want ovs-ofctl's reason", err)
	}
	if err := c.ParseFlow(ctx, "actions=drop\npriority=1,actions=NORMAL"); err == nil {
		t.Error("two lines accepted as one flow")
	}
	// SaveFlows output installs again unchanged, cookies included.
	withCookie := append([]string{"cookie=0x2a,priority=20,ip,nw_dst=10.0.0.0/8,actions=drop"}, flows...)
	if err := c.ReplaceFlows(ctx, "br0", withCookie); err != nil {
		t.Fatal(err)
	}
	saved, err := c.SaveFlows(ctx, "br0")
	if err != nil || len(saved) != 3 || !strings.Contains(strings.Join(saved, "\n"), "cookie=0x2a") {
		t.Fatalf("saved %q %v", saved, err)
	}
	if err := c.ReplaceFlows(ctx, "br0", flows); err != nil {
		t.Fatal(err)
	}
	if err := c.ReplaceFlows(ctx, "br0", saved); err != nil {
		t.Fatal(err)
	}
	if again, err := c.SaveFlows(ctx, "br0"); err != nil || strings.Join(again, "\n") != strings.Join(saved, "\n") {
		t.Errorf("round trip: %q, want %q (%v)", again, saved, err)
	}
	// Root records, read in the same transaction as the bridges.
	if err := c.Transact(ctx, ovs.SetRoot(`external_ids:"ghostbridge-x.y"="0"`)); err != nil {
		t.Fatal(err)
	}
	if _, root, err := c.ReadAll(ctx); err != nil || root["ghostbridge-x.y"] != "0" {
		t.Errorf("root external_ids %v %v", root, err)
	}
	if err := c.Transact(ctx, ovs.RemoveRootKey("external_ids", "ghostbridge-x.y")); err != nil {
		t.Fatal(err)
	}
	if _, root, err := c.ReadAll(ctx); err != nil || len(root) != 0 {
		t.Errorf("root external_ids after remove %v %v", root, err)
	}
	if err := c.Transact(ctx, ovs.DelBridge("br0"), ovs.DelBridge("br0")); err != nil {
		t.Fatal(err)
	}
	if brs, err = c.Bridges(ctx); err != nil || len(brs) != 0 {
		t.Errorf("after del-br: %v %v", brs, err)
	}
}
