package main

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/ghostbridge/ghostbridge/internal/testenv"
	"github.com/ghostbridge/ghostbridge/pkg/sys/libvirt"
	"github.com/ghostbridge/ghostbridge/pkg/vm"
)

// benchCLI runs one in-process command and fails the benchmark on a
// non-zero exit, so a broken command is never timed as a fast one.
func benchCLI(b *testing.B, env cliEnv, args ...string) {
	ios, _, stdout, stderr := TestIO()
	app := NewApp(ios, func(k string) string { return env[k] })
	app.DefaultConfigFiles = nil
	if code := app.Run(context.Background(), args); code != 0 {
		b.Fatalf("%v: exit %d: %s", args, code, stderr.String())
	}
	if stdout.Len() == 0 {
		b.Fatalf("%v: no output", args)
	}
}

// BenchmarkVMList times `vm create --print-xml` and `vm list` with 100
// domains defined on a private libvirtd's test driver, beside
// `virsh list --all` on the same daemon in the same run:
//
//	go test -run '^$' -bench BenchmarkVMList -benchtime 200x ./cmd/ghostbridge/
func BenchmarkVMList(b *testing.B) {
	d := testenv.StartLibvirtd(b)
	ctx := context.Background()
	conn, err := libvirt.Dial(ctx, d.TestURI)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	deps := vm.Deps{Hyp: conn}
	for i := range 100 {
		s := vm.Spec{Name: fmt.Sprintf("bench%03d", i), Type: "test", VCPUs: 1, Memory: 64 << 20,
			NICs: []vm.NIC{{Bridge: "ovsbr0"}, {Bridge: "ovsbr1", VLAN: 10}}}
		if _, err := vm.Create(ctx, deps, s); err != nil {
			b.Fatal(err)
		}
	}
	env := cliEnv{"GHOSTBRIDGE_VM_URI": d.TestURI, "GHOSTBRIDGE_VM_DOMAIN_TYPE": "test"}
	b.Run("ghostbridge-vm-create-print-xml", func(b *testing.B) {
		for b.Loop() {
			benchCLI(b, env, "vm", "create", "web", "--vcpus", "2", "--memory", "2GiB", "--disk", "20GiB",
				"--nic", "ovsbr0", "--nic", "ovsbr1:100", "--hostname", "web", "--print-xml")
		}
	})
	b.Run("ghostbridge-vm-list-101", func(b *testing.B) {
		for b.Loop() {
			benchCLI(b, env, "vm", "list", "--format", "json")
		}
	})
	b.Run("virsh-list-all-101", func(b *testing.B) {
		for b.Loop() {
			out, err := exec.Command("virsh", "-c", d.TestURI, "list", "--all").Output()
			if err != nil || !strings.Contains(string(out), "bench099") {
				b.Fatalf("virsh list --all: %v", err)
			}
		}
	})
}
