package testenv

import (
	"strings"
	"testing"
)

func TestStartLibvirtd(t *testing.T) {
	h := StartLibvirtd(t)
	out, err := h.Virsh(h.TestURI, "list", "--all", "--name")
	if err != nil {
		t.Fatal(err)
	}
	// The test driver's default configuration holds one domain, "test".
	if !strings.Contains(out, "test") {
		t.Fatalf("virsh list on the test driver = %q, want the domain \"test\"", out)
	}
}
