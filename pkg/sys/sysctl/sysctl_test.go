package sysctl

import (
	"errors"
	"testing"
)

func TestGet(t *testing.T) {
	v, err := Get("kernel.ostype")
	if err != nil || v != "Linux" {
		t.Fatalf("kernel.ostype = %q, %v", v, err)
	}
	if _, err := (Proc{}).Get("kernel.ostype"); err != nil {
		t.Fatal(err)
	}
}

func TestBadKeys(t *testing.T) {
	for _, k := range []string{"", "net/ipv4", "..", "net...x", "a\x00b"} {
		if _, err := Get(k); !errors.Is(err, ErrBadKey) {
			t.Errorf("Get(%q) = %v, want ErrBadKey", k, err)
		}
		if err := Set(k, "1"); !errors.Is(err, ErrBadKey) {
			t.Errorf("Set(%q) = %v, want ErrBadKey", k, err)
		}
	}
}
