package diag

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/ghostbridge/ghostbridge/pkg/sys/sshd"
)

// SecurityConfig are the security group's inputs.
type SecurityConfig struct {
	// SSHD is the sshd binary run as `SSHD -T` (diag.sshd); "" skips
	// security.sshd.
	SSHD string
	// SSHDArgs are further arguments for `sshd -T`, such as "-f CONFIG"
	// for an sshd that does not read the default file.
	SSHDArgs []string
	// Listeners are the configured metrics listeners; an empty Addr
	// means that listener is off.
	Listeners []Listener
}

// Listener is a configured listen address and the key it came from.
type Listener struct {
	Key  string // "snap.metrics_listen"
	Addr string // "127.0.0.1:9731", "" = off
}

// Ed25519UserKeyAlgorithms are the public key algorithms that count as
// "Ed25519 user keys": plain Ed25519, Ed25519 held on a FIDO security
// key, and OpenSSH certificates for either. pubkeyacceptedalgorithms
// must list nothing else.
var Ed25519UserKeyAlgorithms = []string{
	"ssh-ed25519",
	"ssh-ed25519-cert-v01@openssh.com",
	"sk-ssh-ed25519@openssh.com",
	"sk-ssh-ed25519-cert-v01@openssh.com",
}

// SecurityChecks returns the security group: sshd's effective
// configuration, and the metrics listeners.
func SecurityChecks(cfg SecurityConfig) []Check {
	var cs []Check
	if cfg.SSHD == "" {
		cs = append(cs, Skipped("security.sshd", "diag.sshd is empty"))
	} else {
		cs = append(cs, Check{Name: "security.sshd", Run: func(ctx context.Context) Outcome { return checkSSHD(ctx, cfg.SSHD, cfg.SSHDArgs) }})
	}
	var ls []Listener
	for _, l := range cfg.Listeners {
		if l.Addr != "" {
			ls = append(ls, l)
		}
	}
	if len(ls) == 0 {
		cs = append(cs, Skipped("security.listeners", "no metrics listener configured (snap.metrics_listen, vector.metrics_listen)"))
	} else {
		cs = append(cs, Check{Name: "security.listeners", Run: func(ctx context.Context) Outcome { return checkListeners(ctx, ls, "/proc/thread-self/net") }})
	}
	return cs
}

const hintSSHDConfig = "set it in the sshd configuration (NixOS services.openssh.settings), then reload sshd"

// sshdClientAddrs are the client addresses security.sshd evaluates the
// Match blocks for: loopback, each private range (where "Match Address"
// typically re-enables passwords for a LAN), shared address space
// (CGNAT, overlay VPNs) and a public address, in both families.
var sshdClientAddrs = []string{
	"127.0.0.1", "10.0.0.1", "172.16.0.1", "192.168.0.1", "100.64.0.1", "203.0.113.1",
	"::1", "fd00::1", "2001:db8::1",
}

// sshdUsers are the users the Match blocks are evaluated for: root (what
// PermitRootLogin guards) and an unprivileged user that exists on every
// Linux host.
var sshdUsers = []string{"root", "nobody"}

// sshdConns lists the connections `sshd -T -C` is run for: each user from
// each client address to each port sshd listens on. Host is the address,
// which is what sshd matches "Match Host" against under its default
// UseDNS no. Match blocks on other users, groups or local addresses are
// beyond what can be enumerated.
func sshdConns(ports []string) []sshd.Conn {
	if len(ports) == 0 {
		ports = []string{"22"}
	}
	var cs []sshd.Conn
	for _, u := range sshdUsers {
		for _, a := range sshdClientAddrs {
			laddr := "0.0.0.0"
			if strings.Contains(a, ":") {
				laddr = "::"
			}
			for _, p := range ports {
				cs = append(cs, sshd.Conn{User: u, Host: a, Addr: a, LAddr: laddr, LPort: p})
			}
		}
	}
	return cs
}

// sshdWant is one setting security.sshd requires; root marks the ones
// that only matter for root's connections.
type sshdWant struct {
	key, value, setting string
	root                bool
}

var sshdWants = []sshdWant{
	{"passwordauthentication", "no", "PasswordAuthentication no", false},
	{"kbdinteractiveauthentication", "no", "KbdInteractiveAuthentication no", false},
	{"permitrootlogin", "no", "PermitRootLogin no", true},
}

// sshdTrouble turns a failed `sshd -T` into the unknown outcome with the
// fix for its cause.
func sshdTrouble(err error) Outcome {
	var ce *sshd.CommandError
	switch {
	case errors.Is(err, sshd.ErrNotInstalled):
		return Unknown("install openssh-server, or set diag.sshd to its path (\"\" skips this check)", "%v", err)
	case errors.As(err, &ce) && strings.Contains(ce.Stderr, "privilege separation directory"):
		return Unknown("sshd -T needs /run/sshd: start sshd, or create it (mkdir -m 0755 /run/sshd)", "%v", err)
	}
	return Unknown("run sshd -t as root to see what it rejects", "%v", err)
}

// userKeyProblem says which user key algorithms other than Ed25519 c
// accepts ("" when none); ok is false when sshd printed neither keyword.
func userKeyProblem(c sshd.Config) (problem string, ok bool) {
	algs, ok := c.PubkeyAlgorithms()
	if !ok {
		return "", false
	}
	var other []string
	for _, a := range strings.Split(algs, ",") {
		if a != "" && !slices.Contains(Ed25519UserKeyAlgorithms, a) {
			other = append(other, a)
		}
	}
	if len(other) == 0 {
		return "", true
	}
	return "pubkeyacceptedalgorithms allows " + strings.Join(other, ","), true
}

const hintUserKeys = "PubkeyAcceptedAlgorithms ssh-ed25519,ssh-ed25519-cert-v01@openssh.com,sk-ssh-ed25519@openssh.com,sk-ssh-ed25519-cert-v01@openssh.com: " + hintSSHDConfig

// checkSSHD reads sshd's configuration as `sshd -T` prints it, then once
// per connection of sshdConns with -C, because without -C sshd ignores
// Match blocks, and a Match block is how passwords or root login come
// back for some clients. A setting a Match block makes bad for some
// connection fails with the connections named.
func checkSSHD(ctx context.Context, bin string, args []string) Outcome {
	c, err := sshd.Effective(ctx, bin, args...)
	var ce *sshd.CommandError
	if errors.As(err, &ce) && strings.Contains(ce.Stderr, "not in connection test specification") {
		// A "Match LocalPort" block makes sshd -T demand a port; port 1,
		// where sshd does not listen, applies no such block and none of
		// the others.
		c, err = sshd.Effective(ctx, bin, append(slices.Clone(args), "-C", "lport=1")...)
	}
	if err != nil {
		return sshdTrouble(err)
	}
	var p hostProblems
	for _, want := range sshdWants {
		if got := c.Get(want.key); got != want.value {
			p.add(fmt.Sprintf("%s: %s", want.setting, hintSSHDConfig), "%s %s", want.key, sshdValue(got))
		}
	}
	keys := c["hostkey"]
	if len(keys) == 0 {
		p.add("HostKey /etc/ssh/ssh_host_ed25519_key: "+hintSSHDConfig, "no hostkey")
	}
	for _, k := range keys {
		typ, err := sshd.KeyType(k)
		if err != nil {
			return Unknown("run diag as root so it can read the host keys", "host key %s: %v", k, err)
		}
		if typ != "ssh-ed25519" {
			p.add("remove HostKey "+k+" (keep only the ed25519 key): "+hintSSHDConfig, "hostkey %s is %s", k, typ)
		}
	}
	globalKeys, ok := userKeyProblem(c)
	if !ok {
		return Unknown("run sshd -T and look for the accepted user key algorithms; set diag.sshd to a supported sshd",
			"sshd -T printed neither pubkeyacceptedalgorithms nor pubkeyacceptedkeytypes: cannot tell which user keys it accepts")
	}
	if globalKeys != "" {
		p.add(hintUserKeys, "%s", globalKeys)
	}

	// Match blocks: a value a connection gets that differs from the
	// global one, and is bad, came from a Match block.
	matched := map[string][]string{} // problem -> connections
	var order []string
	note := func(problem string, conn sshd.Conn) {
		if _, seen := matched[problem]; !seen {
			order = append(order, problem)
		}
		matched[problem] = append(matched[problem], fmt.Sprintf("user=%s addr=%s port=%s", conn.User, conn.Addr, conn.LPort))
	}
	for _, conn := range sshdConns(c["port"]) {
		mc, err := sshd.Effective(ctx, bin, append(slices.Clone(args), conn.Args()...)...)
		if err != nil {
			return sshdTrouble(err)
		}
		for _, want := range sshdWants {
			if want.root && conn.User != "root" {
				continue
			}
			if got := mc.Get(want.key); got != want.value && got != c.Get(want.key) {
				note(fmt.Sprintf("%s %s", want.key, sshdValue(got)), conn)
			}
		}
		if k, ok := userKeyProblem(mc); !ok {
			return Unknown("run sshd -T -C "+conn.String()+" and look for the accepted user key algorithms",
				"sshd -T -C %s printed neither pubkeyacceptedalgorithms nor pubkeyacceptedkeytypes", conn)
		} else if k != "" && k != globalKeys {
			note(k, conn)
		}
	}
	for _, problem := range order {
		p.add("remove it from the Match block that applies (sshd -T -C user=USER,addr=ADDR shows the result): "+hintSSHDConfig,
			"%s in a Match block for %s", problem, strings.Join(matched[problem], ", "))
	}
	if len(p.lines) > 0 {
		return p.fail()
	}
	return Pass("no passwords, no keyboard-interactive, no root login; host keys %s all ed25519; user keys ed25519 only; also for %d connections through Match blocks (users %s from loopback, private, shared and public addresses)",
		strings.Join(keys, ", "), len(sshdConns(c["port"])), strings.Join(sshdUsers, ", "))
}

func sshdValue(s string) string {
	if s == "" {
		return "(unset)"
	}
	return s
}

// loopbackHost reports whether a listen address's host is loopback: an
// IP literal is judged directly, "localhost" by name, other names by
// every address they resolve to.
func loopbackHost(ctx context.Context, host string) (bool, error) {
	if host == "" {
		return false, nil // ":9731" binds every address
	}
	if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return a.Unmap().IsLoopback(), nil
	}
	if strings.EqualFold(host, "localhost") {
		return true, nil
	}
	as, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return false, err
	}
	for _, a := range as {
		if !a.Unmap().IsLoopback() {
			return false, nil
		}
	}
	return len(as) > 0, nil
}

func checkListeners(ctx context.Context, ls []Listener, procNet string) Outcome {
	sockets, err := listeningTCP(procNet)
	if err != nil {
		return Unknown("read /proc/net/tcp and /proc/net/tcp6", "%v", err)
	}
	var p hostProblems
	for _, l := range ls {
		host, portS, err := net.SplitHostPort(l.Addr)
		port, perr := strconv.ParseUint(portS, 10, 16)
		if err != nil || perr != nil {
			p.add(fmt.Sprintf("set %s to HOST:PORT, e.g. 127.0.0.1:9731", l.Key), "%s = %q is not HOST:PORT", l.Key, l.Addr)
			continue
		}
		loop, err := loopbackHost(ctx, host)
		if err != nil {
			return Unknown(fmt.Sprintf("make %s's host resolvable, or use an IP address", l.Key), "%s: resolve %s: %v", l.Key, host, err)
		}
		if !loop {
			// Configured that way on purpose: the operator asked for it.
			p.pass(fmt.Sprintf("%s %s (not loopback, as configured)", l.Key, l.Addr))
			continue
		}
		var open []string
		for _, s := range sockets {
			if s.Port() == uint16(port) && !s.Addr().Unmap().IsLoopback() {
				open = append(open, s.String())
			}
		}
		if len(open) > 0 {
			p.add(fmt.Sprintf("find the process with ss -ltnp 'sport = :%d' and make it use %s (a --metrics-listen flag in its unit overrides the config)", port, l.Key),
				"%s is %s, but port %d listens on %s", l.Key, l.Addr, port, strings.Join(open, ", "))
			continue
		}
		p.pass(fmt.Sprintf("%s %s", l.Key, l.Addr))
	}
	return p.verdict("loopback only: %s")
}

// tcpListen is the st column of a socket in LISTEN state.
const tcpListen = "0A"

// listeningTCP lists the local addresses of listening TCP sockets from
// dir/tcp and dir/tcp6. A missing tcp6 (IPv6 disabled) is not an error.
//
// dir is read through /proc/thread-self on a locked thread, not through
// /proc/self: /proc/self/net shows the main thread's network namespace,
// which a thread parked inside another namespace (netns.Set on the main
// thread, as a namespace-switching library may leave it) would misreport.
func listeningTCP(dir string) ([]netip.AddrPort, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var out []netip.AddrPort
	for _, name := range []string{"tcp", "tcp6"} {
		f, err := os.Open(dir + "/" + name)
		if errors.Is(err, os.ErrNotExist) && name == "tcp6" {
			continue
		}
		if err != nil {
			return nil, err
		}
		as, err := parseProcNetTCP(f)
		if err = errors.Join(err, f.Close()); err != nil {
			return nil, fmt.Errorf("%s/%s: %w", dir, name, err)
		}
		out = append(out, as...)
	}
	return out, nil
}

// parseProcNetTCP reads the listening sockets of a /proc/net/tcp{,6}
// table: "sl local_address rem_address st ...", where an address is hex
// "ADDR:PORT", ADDR being 32-bit words in the machine's byte order.
func parseProcNetTCP(f io.Reader) ([]netip.AddrPort, error) {
	var out []netip.AddrPort
	sc := bufio.NewScanner(f)
	first := true
	for sc.Scan() {
		if first {
			first = false
			continue // header
		}
		fs := strings.Fields(sc.Text())
		if len(fs) < 4 || fs[3] != tcpListen {
			continue
		}
		ap, err := parseHexAddrPort(fs[1])
		if err != nil {
			return nil, err
		}
		out = append(out, ap)
	}
	return out, sc.Err()
}

func parseHexAddrPort(s string) (netip.AddrPort, error) {
	a, p, ok := strings.Cut(s, ":")
	port, perr := strconv.ParseUint(p, 16, 16)
	if !ok || perr != nil || (len(a) != 8 && len(a) != 32) {
		return netip.AddrPort{}, fmt.Errorf("bad socket address %q", s)
	}
	// The kernel printed each 32-bit word of the address as a number in
	// the machine's byte order; storing it back in that order gives the
	// address bytes.
	raw := make([]byte, len(a)/2)
	for i := 0; i < len(a); i += 8 {
		w, err := strconv.ParseUint(a[i:i+8], 16, 32)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("bad socket address %q", s)
		}
		binary.NativeEndian.PutUint32(raw[i/2:], uint32(w))
	}
	addr, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(addr, uint16(port)), nil
}
