package sshd_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ghostbridge/ghostbridge/internal/testenv"
	"github.com/ghostbridge/ghostbridge/pkg/sys/sshd"
)

func keygen(t *testing.T, dir, typ string) string {
	t.Helper()
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		testenv.Skip(t, "ssh-keygen not found (install openssh-client)")
	}
	path := filepath.Join(dir, "key_"+typ)
	if out, err := exec.Command("ssh-keygen", "-q", "-t", typ, "-N", "", "-f", path).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen -t %s: %v: %s", typ, err, out)
	}
	return path
}

func TestKeyType(t *testing.T) {
	dir := t.TempDir()
	for typ, want := range map[string]string{"ed25519": "ssh-ed25519", "rsa": "ssh-rsa", "ecdsa": "ecdsa-sha2-nistp256"} {
		path := keygen(t, dir, typ)
		if got, err := sshd.KeyType(path); err != nil || got != want {
			t.Errorf("KeyType(%s key) = %q, %v; want %q", typ, got, err, want)
		}
		if got, err := sshd.KeyType(path + ".pub"); err != nil || got != want {
			t.Errorf("KeyType(%s public key) = %q, %v; want %q", typ, got, err, want)
		}
	}
	if got, err := sshd.KeyType(filepath.Join(dir, "key_ed25519.missing")); err == nil {
		t.Errorf("missing key: %q, want an error", got)
	}
	// A private key in a form ParseKeyType does not read (PKCS#8) is told
	// by the public key beside it, which is read first.
	pkcs8 := filepath.Join(dir, "key_pkcs8")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "rsa", "-m", "PKCS8", "-N", "", "-f", pkcs8).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen -m PKCS8: %v: %s", err, out)
	}
	if b, err := os.ReadFile(pkcs8); err != nil || !strings.HasPrefix(string(b), "-----BEGIN PRIVATE KEY-----") {
		t.Fatalf("PKCS#8 key: %v %.40q", err, b)
	}
	if got, err := sshd.KeyType(pkcs8); err != nil || got != "ssh-rsa" {
		t.Errorf("KeyType(PKCS#8 key with .pub) = %q, %v; want ssh-rsa", got, err)
	}
	// Without the .pub, the private key is parsed.
	if err := os.Remove(pkcs8 + ".pub"); err != nil {
		t.Fatal(err)
	}
	if got, err := sshd.KeyType(pkcs8); !errors.Is(err, sshd.ErrUnknownKey) {
		t.Errorf("KeyType(PKCS#8 key alone) = %q, %v; want ErrUnknownKey", got, err)
	}
	if _, err := sshd.ParseKeyType([]byte("hello")); !errors.Is(err, sshd.ErrUnknownKey) {
		t.Errorf("garbage: %v, want ErrUnknownKey", err)
	}
}

func TestParse(t *testing.T) {
	c := sshd.Parse([]byte("port 22\nhostkey /a\nhostkey /b\nPermitRootLogin no\n\n"))
	if c.Get("port") != "22" || len(c["hostkey"]) != 2 || c.Get("permitrootlogin") != "no" || c.Get("nosuch") != "" {
		t.Errorf("Parse: %v", c)
	}
	for _, tc := range []struct {
		out  string
		want string
		ok   bool
	}{
		{"pubkeyacceptedalgorithms ssh-ed25519,rsa-sha2-512\n", "ssh-ed25519,rsa-sha2-512", true},
		{"pubkeyacceptedkeytypes ssh-ed25519\n", "ssh-ed25519", true}, // OpenSSH < 8.5
		{"port 22\n", "", false},
	} {
		if got, ok := sshd.Parse([]byte(tc.out)).PubkeyAlgorithms(); got != tc.want || ok != tc.ok {
			t.Errorf("PubkeyAlgorithms(%q) = %q, %v; want %q, %v", tc.out, got, ok, tc.want, tc.ok)
		}
	}
	c2 := sshd.Conn{User: "root", Host: "10.0.0.1", Addr: "10.0.0.1", LPort: "22"}
	if got := strings.Join(c2.Args(), " "); got != "-C user=root,host=10.0.0.1,addr=10.0.0.1,lport=22" {
		t.Errorf("Args = %q", got)
	}
}

// NeedPrivsep makes sure /run/sshd, which `sshd -T` insists on, exists
// for the test, and removes it afterwards if the test made it.
func needPrivsep(t *testing.T) {
	t.Helper()
	testenv.RequireRoot(t)
	if _, err := os.Stat("/run/sshd"); err == nil {
		return
	}
	if err := os.Mkdir("/run/sshd", 0o755); err != nil {
		testenv.Skip(t, "cannot create /run/sshd for sshd -T: "+err.Error())
	}
	t.Cleanup(func() { _ = os.Remove("/run/sshd") })
}

func TestEffective(t *testing.T) {
	if _, err := exec.LookPath("sshd"); err != nil {
		testenv.Skip(t, "sshd not found (install openssh-server)")
	}
	needPrivsep(t)
	dir := t.TempDir()
	key := keygen(t, dir, "ed25519")
	conf := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(conf, []byte("HostKey "+key+"\nPermitRootLogin no\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := sshd.Effective(context.Background(), "sshd", "-f", conf)
	if err != nil {
		t.Fatal(err)
	}
	if c.Get("permitrootlogin") != "no" || len(c["hostkey"]) != 1 || c.Get("hostkey") != key {
		t.Errorf("effective: permitrootlogin %q hostkey %v", c.Get("permitrootlogin"), c["hostkey"])
	}
	// Match blocks apply only with -C: root from 10/8 may log in.
	if err := os.WriteFile(conf, []byte("HostKey "+key+"\nPermitRootLogin no\nMatch User root Address 10.0.0.0/8\n PermitRootLogin yes\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		conn sshd.Conn
		want string
	}{
		{sshd.Conn{User: "root", Host: "10.1.2.3", Addr: "10.1.2.3", LAddr: "0.0.0.0", LPort: "22"}, "yes"},
		{sshd.Conn{User: "root", Host: "192.168.0.1", Addr: "192.168.0.1"}, "no"},
		{sshd.Conn{User: "nobody", Host: "10.1.2.3", Addr: "10.1.2.3"}, "no"},
	} {
		c, err := sshd.Effective(context.Background(), "sshd", append([]string{"-f", conf}, tc.conn.Args()...)...)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Get("permitrootlogin"); got != tc.want {
			t.Errorf("-C %s: permitrootlogin %q, want %q", tc.conn, got, tc.want)
		}
	}
	if c, err := sshd.Effective(context.Background(), "sshd", "-f", conf); err != nil || c.Get("permitrootlogin") != "no" {
		t.Errorf("without -C: permitrootlogin %q, %v; want no (Match blocks ignored)", c.Get("permitrootlogin"), err)
	}
	// A bad config is an error carrying argv and stderr.
	if err := os.WriteFile(conf, []byte("NoSuchKeyword yes\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var ce *sshd.CommandError
	if _, err := sshd.Effective(context.Background(), "sshd", "-f", conf); !errors.As(err, &ce) || ce.Stderr == "" {
		t.Errorf("bad config: %v, want a CommandError with stderr", err)
	}
	if _, err := sshd.Effective(context.Background(), "/nonexistent/sshd"); !errors.Is(err, sshd.ErrNotInstalled) {
		t.Errorf("missing binary: %v, want ErrNotInstalled", err)
	}
}

func FuzzParseKeyType(f *testing.F) {
	f.Add([]byte("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n-----END OPENSSH PRIVATE KEY-----\n"))
	f.Add([]byte("ssh-ed25519 AAAA comment"))
	f.Add([]byte("-----BEGIN RSA PRIVATE KEY-----"))
	f.Fuzz(func(t *testing.T, b []byte) {
		typ, err := sshd.ParseKeyType(b)
		if err == nil && typ == "" {
			t.Fatal("no error and no type")
		}
		_ = sshd.Parse(b)
	})
}
