package diag_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/ghostbridge/ghostbridge/internal/testenv"
	"github.com/ghostbridge/ghostbridge/pkg/diag"
)

func runSecurity(cfg diag.SecurityConfig) diag.Report {
	return diag.Run(context.Background(), diag.SecurityChecks(cfg), diag.Options{Timeout: time.Minute})
}

// TestSecuritySSHD runs the real `sshd -T` on good and bad configurations.
func TestSecuritySSHD(t *testing.T) {
	h := diag.NewSSHDHost(t)
	good := h.Good()

	r := runSecurity(h.Config(t, good...))
	expectCheck(t, r, "security.sshd", diag.StatusPass, "", "host keys "+h.Ed25519+" all ed25519")

	cases := []struct {
		what         string
		lines        []string
		hint, detail string
	}{
		{"passwords", append(good[:1:1], good[2:]...), "PasswordAuthentication no", "passwordauthentication yes"},
		{"root with keys", append(good[:3:3], good[4], "PermitRootLogin prohibit-password"), "PermitRootLogin no", "permitrootlogin without-password"},
		{"keyboard-interactive", append(good[:2:2], good[3:]...), "KbdInteractiveAuthentication no", "kbdinteractiveauthentication yes"},
		{"rsa host key", append(good, "HostKey "+h.RSA), "remove HostKey " + h.RSA, "hostkey " + h.RSA + " is ssh-rsa"},
		{"rsa user keys", good[:4], "PubkeyAcceptedAlgorithms ssh-ed25519,", "pubkeyacceptedalgorithms allows ecdsa-sha2-nistp256-cert-v01@openssh.com"},
	}
	for _, c := range cases {
		t.Run(c.what, func(t *testing.T) {
			r := runSecurity(h.Config(t, c.lines...))
			expectCheck(t, r, "security.sshd", diag.StatusFail, c.hint, c.detail)
		})
	}
	// Debian's defaults: everything at once, in one line.
	r = runSecurity(h.Config(t, "HostKey "+h.RSA))
	expectCheck(t, r, "security.sshd", diag.StatusFail, "PasswordAuthentication no",
		"passwordauthentication yes; kbdinteractiveauthentication yes; permitrootlogin without-password; hostkey "+h.RSA+" is ssh-rsa; pubkeyacceptedalgorithms allows")

	// No sshd, and an sshd that refuses its configuration: cannot tell.
	r = runSecurity(diag.SecurityConfig{SSHD: "/nonexistent/sshd"})
	expectCheck(t, r, "security.sshd", diag.StatusUnknown, "diag.sshd", "sshd not installed")
	r = runSecurity(h.Config(t, "NoSuchKeyword yes"))
	expectCheck(t, r, "security.sshd", diag.StatusUnknown, "sshd -t", "NoSuchKeyword")
}

// TestSecuritySSHDMatch runs the real `sshd -T` on configurations whose
// Match blocks give passwords or root login back to some clients; without
// -C sshd ignores Match blocks and prints the good global values.
func TestSecuritySSHDMatch(t *testing.T) {
	h := diag.NewSSHDHost(t)
	good := h.Good()
	with := func(lines ...string) []string { return append(slices.Clone(good), lines...) }
	for _, c := range []struct {
		what         string
		lines        []string
		status       diag.Status
		hint, detail string
	}{
		{"passwords on the LAN", with("Match Address 192.168.0.0/16", "  PasswordAuthentication yes"), diag.StatusFail,
			"remove it from the Match block", "passwordauthentication yes in a Match block for user=root addr=192.168.0.1 port=22, user=nobody addr=192.168.0.1 port=22"},
		{"root from 10/8", with("Match User root Address 10.0.0.0/8", "  PermitRootLogin prohibit-password"), diag.StatusFail,
			"sshd -T -C", "permitrootlogin without-password in a Match block for user=root addr=10.0.0.1 port=22"},
		{"passwords on another port", with("Port 22", "Port 2222", "Match LocalPort 2222", "  KbdInteractiveAuthentication yes"), diag.StatusFail,
			"Match block", "kbdinteractiveauthentication yes in a Match block for user=root addr=127.0.0.1 port=2222"},
		{"rsa user keys over IPv6", with("Match Address 2001:db8::/32", "  PubkeyAcceptedAlgorithms ssh-ed25519,rsa-sha2-512"), diag.StatusFail,
			"Match block", "pubkeyacceptedalgorithms allows rsa-sha2-512 in a Match block for user=root addr=2001:db8::1 port=22"},
		// PermitRootLogin for a user that is not root lets nobody in as root.
		{"root login for another user", with("Match User nobody", "  PermitRootLogin yes"), diag.StatusPass, "", "also for 18 connections through Match blocks"},
		{"a Match block that only restricts", with("Match Address 203.0.113.0/24", "  PubkeyAuthentication no"), diag.StatusPass, "", "user keys ed25519 only"},
	} {
		t.Run(c.what, func(t *testing.T) {
			expectCheck(t, runSecurity(h.Config(t, c.lines...)), "security.sshd", c.status, c.hint, c.detail)
		})
	}
}

// oldSSHD writes an sshd stand-in that runs the real sshd and rewrites
// its output with sed, as an OpenSSH older than 8.5 prints it
// (pubkeyacceptedkeytypes), or without either keyword.
func oldSSHD(t *testing.T, sedExpr string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sshd")
	script := "#!/bin/sh\nout=$(sshd \"$@\") || exit $?\nprintf '%s\\n' \"$out\" | sed -e '" + sedExpr + "'\n"
	if err := os.WriteFile(path, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestSecuritySSHDOldKeyword(t *testing.T) {
	h := diag.NewSSHDHost(t)
	good := h.Good()[:4:4] // sshd's default user keys
	renamed := oldSSHD(t, "s/^pubkeyacceptedalgorithms /pubkeyacceptedkeytypes /")
	dropped := oldSSHD(t, "/^pubkeyacceptedalgorithms /d")
	cfg := func(bin string, lines ...string) diag.SecurityConfig {
		c := h.Config(t, lines...)
		c.SSHD = bin
		return c
	}
	// sshd's default accepts RSA and ECDSA user keys, under either name.
	expectCheck(t, runSecurity(cfg(renamed, good...)), "security.sshd", diag.StatusFail, "PubkeyAcceptedAlgorithms ssh-ed25519,", "pubkeyacceptedalgorithms allows ecdsa-sha2-nistp256")
	expectCheck(t, runSecurity(cfg(renamed, append(good, diag.Ed25519Users)...)), "security.sshd", diag.StatusPass, "", "user keys ed25519 only")
	expectCheck(t, runSecurity(cfg(dropped, append(good, diag.Ed25519Users)...)), "security.sshd", diag.StatusUnknown, "diag.sshd",
		"neither pubkeyacceptedalgorithms nor pubkeyacceptedkeytypes")
}

// TestSecurityListeners opens real sockets and expects a loopback-only
// metrics listener to fail when its port is open on every address.
func TestSecurityListeners(t *testing.T) {
	lo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lo.Close()
	loPort := lo.Addr().(*net.TCPAddr).Port
	cfg := diag.SecurityConfig{Listeners: []diag.Listener{
		{Key: "snap.metrics_listen", Addr: fmt.Sprintf("127.0.0.1:%d", loPort)},
		{Key: "vector.metrics_listen", Addr: ""},
	}}
	r := runSecurity(cfg)
	expectCheck(t, r, "security.listeners", diag.StatusPass, "", fmt.Sprintf("loopback only: snap.metrics_listen 127.0.0.1:%d", loPort))

	for _, network := range []string{"tcp4", "tcp6"} {
		t.Run(network, func(t *testing.T) {
			ln, err := net.Listen(network, ":0")
			if err != nil {
				testenv.Skip(t, fmt.Sprintf("listen %s: %v", network, err))
			}
			defer ln.Close()
			port := ln.Addr().(*net.TCPAddr).Port
			cfg := diag.SecurityConfig{Listeners: []diag.Listener{{Key: "vector.metrics_listen", Addr: fmt.Sprintf("localhost:%d", port)}}}
			wild := map[string]string{"tcp4": "0.0.0.0", "tcp6": "[::]"}[network]
			expectCheck(t, runSecurity(cfg), "security.listeners", diag.StatusFail, fmt.Sprintf("ss -ltnp 'sport = :%d'", port),
				fmt.Sprintf("vector.metrics_listen is localhost:%d, but port %d listens on %s:%d", port, port, wild, port))
		})
	}

	// Configured to listen publicly: the operator's choice, said in the detail.
	cfg = diag.SecurityConfig{Listeners: []diag.Listener{{Key: "snap.metrics_listen", Addr: "0.0.0.0:9731"}}}
	expectCheck(t, runSecurity(cfg), "security.listeners", diag.StatusPass, "", "0.0.0.0:9731 (not loopback, as configured)")
	cfg = diag.SecurityConfig{Listeners: []diag.Listener{{Key: "snap.metrics_listen", Addr: "9731"}}}
	expectCheck(t, runSecurity(cfg), "security.listeners", diag.StatusFail, "set snap.metrics_listen to HOST:PORT", "is not HOST:PORT")

	for _, c := range diag.SecurityChecks(diag.SecurityConfig{}) {
		if c.SkipReason == "" {
			t.Errorf("%s: not skipped with nothing configured", c.Name)
		}
	}
}
