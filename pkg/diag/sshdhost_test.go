package diag

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ghostbridge/ghostbridge/internal/testenv"
)

// Ed25519Users is the sshd_config line that accepts ed25519 user keys only.
const Ed25519Users = "PubkeyAcceptedAlgorithms ssh-ed25519,ssh-ed25519-cert-v01@openssh.com,sk-ssh-ed25519@openssh.com"

// SSHDHost is a directory with host keys from ssh-keygen and a writer of
// sshd configurations that use them, for the tests and the benchmark that
// run the real `sshd -T`. It is exported from the test build so that the
// black-box security tests and the benchmark here share it.
type SSHDHost struct {
	Dir     string
	Ed25519 string // ed25519 host key
	RSA     string // RSA host key
}

// NewSSHDHost makes the host keys; it skips (fails when Strict) without
// sshd, ssh-keygen or root.
func NewSSHDHost(t testing.TB) *SSHDHost {
	t.Helper()
	for _, bin := range []string{"sshd", "ssh-keygen"} {
		if _, err := exec.LookPath(bin); err != nil {
			testenv.Skip(t, bin+" not found (install openssh-server)")
		}
	}
	testenv.RequireRoot(t)
	// sshd -T refuses to run without its privilege separation directory,
	// which only exists where sshd was started; make it for the test.
	if _, err := os.Stat("/run/sshd"); err != nil {
		if err := os.Mkdir("/run/sshd", 0o755); err != nil {
			testenv.Skip(t, "cannot create /run/sshd for sshd -T: "+err.Error())
		}
		t.Cleanup(func() { _ = os.Remove("/run/sshd") })
	}
	h := &SSHDHost{Dir: t.TempDir()}
	for typ, dst := range map[string]*string{"ed25519": &h.Ed25519, "rsa": &h.RSA} {
		*dst = filepath.Join(h.Dir, "ssh_host_"+typ+"_key")
		if out, err := exec.Command("ssh-keygen", "-q", "-t", typ, "-N", "", "-f", *dst).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v: %s", err, out)
		}
	}
	return h
}

// Good is a configuration security.sshd passes: the ed25519 host key, no
// passwords, no keyboard-interactive, no root login, and (last, so a test
// can cut it off) ed25519 user keys only.
func (h *SSHDHost) Good() []string {
	return []string{"HostKey " + h.Ed25519, "PasswordAuthentication no", "KbdInteractiveAuthentication no", "PermitRootLogin no", Ed25519Users}
}

// Config writes an sshd_config of lines and returns the security config
// that has diag run `sshd -T -f` on it.
func (h *SSHDHost) Config(t testing.TB, lines ...string) SecurityConfig {
	t.Helper()
	path := filepath.Join(h.Dir, fmt.Sprintf("sshd_config.%d", time.Now().UnixNano()))
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return SecurityConfig{SSHD: "sshd", SSHDArgs: []string{"-f", path}}
}
