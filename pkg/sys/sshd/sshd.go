// Package sshd reads OpenSSH's effective server configuration the way
// sshd itself resolves it: by running `sshd -T` (an argument vector, never
// a shell) and parsing its "keyword value" lines, and it tells the type of
// a host key file.
//
// It only reads: it never starts, stops or reconfigures sshd, and it does
// not judge the configuration (pkg/diag does).
package sshd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// ErrNotInstalled is wrapped when the sshd binary cannot be found.
var ErrNotInstalled = errors.New("sshd not installed")

// CommandError is a failed `sshd -T`, with its argv and stderr.
type CommandError struct {
	Argv   []string
	Stderr string
	Err    error
}

func (e *CommandError) Error() string {
	return fmt.Sprintf("%s: %v: %s", strings.Join(e.Argv, " "), e.Err, e.Stderr)
}

// Unwrap returns the exec error.
func (e *CommandError) Unwrap() error { return e.Err }

// Config is sshd's effective configuration: lower-case keyword to its
// values, one entry per line sshd printed (keywords such as hostkey
// appear once per value).
type Config map[string][]string

// Get returns the keyword's first value, or "".
func (c Config) Get(keyword string) string {
	if v := c[strings.ToLower(keyword)]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// PubkeyAlgorithms returns the user key algorithms sshd accepts, comma
// separated, and whether sshd printed them at all: OpenSSH 8.5 renamed
// pubkeyacceptedkeytypes to pubkeyacceptedalgorithms, and older sshd
// prints only the former.
func (c Config) PubkeyAlgorithms() (string, bool) {
	for _, k := range []string{"pubkeyacceptedalgorithms", "pubkeyacceptedkeytypes"} {
		if v, ok := c[k]; ok && len(v) > 0 {
			return v[0], true
		}
	}
	return "", false
}

// Conn is a connection for `sshd -T -C`: sshd applies the Match blocks
// that would apply to it before printing the configuration.
type Conn struct {
	User  string // user name logging in
	Host  string // the client's host name as sshd resolves it (its address under UseDNS no)
	Addr  string // the client's address
	LAddr string // local address connected to
	LPort string // local port connected to
}

// Args returns the -C argument for c; empty fields are left out.
func (c Conn) Args() []string {
	var kv []string
	for _, f := range []struct{ k, v string }{{"user", c.User}, {"host", c.Host}, {"addr", c.Addr}, {"laddr", c.LAddr}, {"lport", c.LPort}} {
		if f.v != "" {
			kv = append(kv, f.k+"="+f.v)
		}
	}
	return []string{"-C", strings.Join(kv, ",")}
}

// String names the connection the way the -C argument does.
func (c Conn) String() string { return c.Args()[1] }

// Effective runs `bin -T args...` and parses its output. args may add
// "-f CONFIG" or "-C user=...,host=...,addr=..." (connection parameters
// that make sshd apply its Match blocks).
func Effective(ctx context.Context, bin string, args ...string) (Config, error) {
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", bin, ErrNotInstalled, err)
	}
	argv := append([]string{path, "-T"}, args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, &CommandError{Argv: argv, Stderr: strings.TrimSpace(stderr.String()), Err: err}
	}
	return Parse(stdout.Bytes()), nil
}

// Parse reads `sshd -T` output: one "keyword value..." per line.
func Parse(out []byte) Config {
	c := Config{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		k, v, _ := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		if k == "" {
			continue
		}
		k = strings.ToLower(k)
		c[k] = append(c[k], strings.TrimSpace(v))
	}
	return c
}

// ErrUnknownKey is wrapped when a key file's type cannot be told.
var ErrUnknownKey = errors.New("unknown key format")

// KeyType tells the algorithm of a host key file ("ssh-ed25519",
// "ssh-rsa", "ecdsa-sha2-nistp256", ...) from the file itself, not its
// name: the OpenSSH private key format keeps the public key, with its
// type, unencrypted; PEM files name the type in their header. The public
// key beside it (PATH.pub) is read first: it names the type in every
// format, needs no privilege to read, and keeps the secret unread; the
// private key is parsed only when there is no readable .pub.
func KeyType(path string) (string, error) {
	if pub, err := os.ReadFile(path + ".pub"); err == nil {
		if typ, err := ParseKeyType(pub); err == nil {
			return typ, nil
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	typ, err := ParseKeyType(b)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return typ, nil
}

// ParseKeyType tells the algorithm of a private key in OpenSSH or PEM
// form, or of a public key line.
func ParseKeyType(b []byte) (string, error) {
	s := strings.TrimSpace(string(b))
	const begin = "-----BEGIN OPENSSH PRIVATE KEY-----"
	switch {
	case strings.HasPrefix(s, begin):
		body, _, _ := strings.Cut(strings.TrimPrefix(s, begin), "-----END")
		raw, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(body), ""))
		if err != nil {
			return "", fmt.Errorf("%w: %v", ErrUnknownKey, err)
		}
		return openSSHKeyType(raw)
	case strings.HasPrefix(s, "-----BEGIN RSA PRIVATE KEY-----"):
		return "ssh-rsa", nil
	case strings.HasPrefix(s, "-----BEGIN EC PRIVATE KEY-----"):
		return "ecdsa", nil
	case strings.HasPrefix(s, "-----BEGIN DSA PRIVATE KEY-----"):
		return "ssh-dss", nil
	case strings.HasPrefix(s, "ssh-") || strings.HasPrefix(s, "ecdsa-") || strings.HasPrefix(s, "sk-"):
		return strings.Fields(s)[0], nil
	}
	return "", ErrUnknownKey
}

// openSSHKeyType reads the first public key's type out of an
// "openssh-key-v1" blob: magic, cipher, kdf, kdf options, key count,
// then the public key, whose first field is its type.
func openSSHKeyType(raw []byte) (string, error) {
	const magic = "openssh-key-v1\x00"
	if !bytes.HasPrefix(raw, []byte(magic)) {
		return "", fmt.Errorf("%w: no openssh-key-v1 magic", ErrUnknownKey)
	}
	r := raw[len(magic):]
	next := func() ([]byte, bool) {
		if len(r) < 4 {
			return nil, false
		}
		n := binary.BigEndian.Uint32(r)
		if uint64(n) > uint64(len(r)-4) {
			return nil, false
		}
		v := r[4 : 4+n]
		r = r[4+n:]
		return v, true
	}
	for range 3 { // cipher, kdf, kdf options
		if _, ok := next(); !ok {
			return "", fmt.Errorf("%w: truncated header", ErrUnknownKey)
		}
	}
	if len(r) < 4 || binary.BigEndian.Uint32(r) < 1 {
		return "", fmt.Errorf("%w: no keys", ErrUnknownKey)
	}
	r = r[4:]
	pub, ok := next()
	if !ok {
		return "", fmt.Errorf("%w: truncated public key", ErrUnknownKey)
	}
	r = pub
	typ, ok := next()
	if !ok || len(typ) == 0 {
		return "", fmt.Errorf("%w: no key type", ErrUnknownKey)
	}
	return string(typ), nil
}
