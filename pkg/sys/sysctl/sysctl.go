// Package sysctl reads and writes kernel parameters through /proc/sys.
//
// Keys are written the way sysctl(8) names them ("net.ipv4.ip_forward").
// Values under /proc/sys/net belong to the network namespace of the calling
// thread. The package never runs the sysctl program and never writes a key
// it was not asked to.
package sysctl

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ErrBadKey is returned for a key that could escape /proc/sys.
var ErrBadKey = errors.New("bad sysctl key")

// Root is where the parameters live.
const Root = "/proc/sys"

func path(key string) (string, error) {
	if key == "" || strings.Contains(key, "..") || strings.ContainsAny(key, "/\x00") {
		return "", fmt.Errorf("sysctl %q: %w", key, ErrBadKey)
	}
	return filepath.Join(Root, strings.ReplaceAll(key, ".", "/")), nil
}

// Get returns the value of key with surrounding white space removed.
func Get(key string) (string, error) {
	p, err := path(key)
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return "", fmt.Errorf("sysctl %s: %w", key, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// Set writes value to key.
func Set(key, value string) error {
	p, err := path(key)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return fmt.Errorf("sysctl %s: %w", key, err)
	}
	_, err = f.WriteString(value + "\n")
	if err = errors.Join(err, f.Close()); err != nil {
		return fmt.Errorf("sysctl %s = %s: %w", key, value, err)
	}
	return nil
}

// Proc reads and writes parameters through /proc/sys. Run, when set, runs
// each access (for example on a thread inside another network namespace);
// nil runs it on the calling goroutine.
type Proc struct {
	Run func(func() error) error
}

func (p Proc) do(fn func() error) error {
	if p.Run == nil {
		return fn()
	}
	return p.Run(fn)
}

// Get returns the value of key.
func (p Proc) Get(key string) (v string, err error) {
	err = p.do(func() error {
		var gerr error
		v, gerr = Get(key)
		return gerr
	})
	return v, err
}

// Set writes value to key.
func (p Proc) Set(key, value string) error {
	return p.do(func() error { return Set(key, value) })
}
