package vm_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ghostbridge/ghostbridge/pkg/vm"
)

// createTransient starts a transient guest (virsh create: no persistent
// definition), which libvirt removes once it is off.
func (e *env) createTransient(t *testing.T, name string) {
	t.Helper()
	x := filepath.Join(t.TempDir(), name+".xml")
	text := `<domain type='test'><name>` + name + `</name><memory>8192</memory><os><type>hvm</type></os></domain>`
	if err := os.WriteFile(x, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	e.virsh(t, "create", x)
}

// TestStopTransientGuest stops transient guests, which vanish once they are
// off: the wait must take the guest's disappearance for the shutdown it
// asked for, not fail with "no such vm"; --force likewise.
func TestStopTransientGuest(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	for _, opts := range []vm.StopOptions{{Timeout: time.Minute}, {Force: true}} {
		e.createTransient(t, "gbtransient")
		r, err := vm.Stop(ctx, e.deps, "gbtransient", opts)
		if err != nil {
			t.Fatalf("stop %+v of a transient guest: %v", opts, err)
		}
		if r != (vm.StateResult{Name: "gbtransient", State: "shut off", Changed: true, Gone: true}) {
			t.Errorf("stop %+v = %+v, want shut off, changed, gone", opts, r)
		}
		if slices.Contains(e.domains(t), "gbtransient") {
			t.Fatalf("stop %+v: the transient guest is still listed", opts)
		}
	}
}

// TestStopPausedGuestFailsFast checks a graceful stop of a paused guest
// fails at once with a one-line error naming the state and --force, sends
// no shutdown and leaves the guest paused, instead of waiting out the
// timeout for a guest that cannot act on the request.
func TestStopPausedGuestFailsFast(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	s := spec("sleepy")
	s.Disk, s.Start = 0, true
	if _, err := vm.Create(ctx, e.deps, s); err != nil {
		t.Fatal(err)
	}
	e.virsh(t, "suspend", "sleepy")
	_, err := vm.Stop(ctx, e.deps, "sleepy", vm.StopOptions{Timeout: time.Hour})
	if !errors.Is(err, vm.ErrCannotShutDown) || strings.Contains(err.Error(), "\n") ||
		!strings.Contains(err.Error(), "paused") || !strings.Contains(err.Error(), "vm stop sleepy --force") {
		t.Fatalf("graceful stop of a paused guest: %v; want one line wrapping ErrCannotShutDown naming paused and --force", err)
	}
	if st := e.virsh(t, "domstate", "sleepy"); st != "paused" {
		t.Errorf("after the refused stop the guest is %q, want paused", st)
	}
	r, err := vm.Stop(ctx, e.deps, "sleepy", vm.StopOptions{Force: true})
	if err != nil || r.State != "shut off" || r.Gone {
		t.Fatalf("stop --force of the paused guest: %+v, %v", r, err)
	}
	if _, err := vm.Delete(ctx, e.deps, "sleepy", true); err != nil {
		t.Fatal(err)
	}
}

// unreadable wraps the real connection and spoils one guest's listing
// entry each way Domains and List can meet one: an XML the parser refuses,
// and an entry Domains could not read.
type unreadable struct{ vm.Hypervisor }

var errUnreadable = errors.New("injected: XML fetch failed")

func (u unreadable) Domains(ctx context.Context) ([]vm.DomainInfo, error) {
	doms, err := u.Hypervisor.Domains(ctx)
	for i := range doms {
		switch doms[i].Name {
		case "badxml":
			doms[i].XML = "<domain><name>badxml</name><vcpu>lots</vcpu></domain>"
		case "nofetch":
			doms[i].XML, doms[i].Err = "", errUnreadable
		}
	}
	return doms, err
}

// TestListKeepsReadableGuests checks one unreadable guest does not hide
// the rest: List returns every guest, the unreadable ones with Error set,
// and an error wrapping ErrIncomplete that names them.
func TestListKeepsReadableGuests(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	for _, n := range []string{"badxml", "good", "nofetch"} {
		s := spec(n)
		s.Disk = 0
		if _, err := vm.Create(ctx, e.deps, s); err != nil {
			t.Fatal(err)
		}
	}
	d := e.deps
	d.Hyp = unreadable{e.conn}
	l, err := vm.List(ctx, d)
	if !errors.Is(err, vm.ErrIncomplete) || !strings.Contains(err.Error(), "2 of 4") ||
		!strings.Contains(err.Error(), "vm badxml") || !strings.Contains(err.Error(), "vm nofetch") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("List err = %v; want one line wrapping ErrIncomplete naming badxml and nofetch, 2 of 4", err)
	}
	byName := map[string]vm.VM{}
	for _, v := range l.VMs {
		byName[v.Name] = v
	}
	if len(l.VMs) != 4 {
		t.Fatalf("List = %+v; want the four guests", l.VMs)
	}
	if g := byName["good"]; g.Error != "" || !g.Managed || g.VCPUs != 2 || len(g.NICs) != 2 {
		t.Errorf("good = %+v", g)
	}
	if g := byName["test"]; g.Error != "" || g.State != "running" {
		t.Errorf("test = %+v", g)
	}
	if g := byName["badxml"]; !strings.Contains(g.Error, "vcpu") || g.State != "shut off" || g.NICs == nil {
		t.Errorf("badxml = %+v; want its state and the parse error", g)
	}
	if g := byName["nofetch"]; !strings.Contains(g.Error, errUnreadable.Error()) || g.Volumes == nil {
		t.Errorf("nofetch = %+v; want the fetch error", g)
	}
}
