package main

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DiagConfig is the [diag] table: what `ghostbridge diag` expects of the
// host beyond what the other tables already say. An empty list skips the
// checks that would use it.
type DiagConfig struct {
	Timeout        Duration    `json:"timeout"`
	FreeMinPercent float64     `json:"free_min_percent"`
	Mounts         []DiagMount `json:"mounts"`
	Services       []string    `json:"services"`
	DBusNames      []string    `json:"dbus_names"`
	DBusAddress    string      `json:"dbus_address"`
	SyncLagMax     uint64      `json:"sync_lag_max"`
	SSHD           string      `json:"sshd"`
}

// DiagMount is one entry of diag.mounts: a mount point and the options it
// must be mounted with.
type DiagMount struct {
	Path    string   `json:"path"`
	Options []string `json:"options"`
}

// maxDiagTimeout bounds diag.timeout: a probe that needs longer is a hung
// probe, and a monitoring system gives up first.
const maxDiagTimeout = 5 * time.Minute

func defaultDiagConfig() DiagConfig {
	return DiagConfig{
		Timeout:        Duration(2 * time.Second),
		FreeMinPercent: 10,
		Mounts:         []DiagMount{},
		Services:       []string{},
		DBusNames:      []string{},
		SyncLagMax:     60,
		SSHD:           "sshd",
	}
}

// decodeDiag reads the [diag] keys; get is viper's Get.
func decodeDiag(get func(string) any, dst *DiagConfig) []Problem {
	var ps []Problem
	bad := func(key string, v any) {
		ps = append(ps, Problem{Key: key, Value: showValue(v), Want: wantFor(key)})
	}
	if raw := get("diag.timeout"); raw != nil {
		if d, ok := parseDuration(raw); ok {
			dst.Timeout = d
		} else {
			bad("diag.timeout", raw)
		}
	}
	if raw := get("diag.free_min_percent"); raw != nil {
		if f, ok := parsePercent(raw); ok {
			dst.FreeMinPercent = f
		} else {
			bad("diag.free_min_percent", raw)
		}
	}
	if raw := get("diag.sync_lag_max"); raw != nil {
		if n, ok := parseCount(raw); ok {
			dst.SyncLagMax = n
		} else {
			bad("diag.sync_lag_max", raw)
		}
	}
	for key, d := range map[string]*string{"diag.dbus_address": &dst.DBusAddress, "diag.sshd": &dst.SSHD} {
		switch v := get(key).(type) {
		case nil:
		case string:
			*d = v
		default:
			bad(key, v)
		}
	}
	for key, d := range map[string]*[]string{"diag.services": &dst.Services, "diag.dbus_names": &dst.DBusNames} {
		if l, ok := stringList(get(key)); !ok {
			bad(key, get(key))
		} else if l != nil {
			*d = l
		}
	}
	switch v := get("diag.mounts").(type) {
	case nil:
	case []any:
		for i, item := range v {
			m, mps := decodeDiagMount(fmt.Sprintf("diag.mounts[%d]", i), item)
			ps = append(ps, mps...)
			dst.Mounts = append(dst.Mounts, m)
		}
	default:
		bad("diag.mounts", v)
	}
	sortProblems(ps)
	return ps
}

// decodeDiagMount reads one {path, options} table.
func decodeDiagMount(key string, item any) (DiagMount, []Problem) {
	m := DiagMount{Options: []string{}}
	tbl, ok := toStringMap(item)
	if !ok {
		return m, []Problem{{Key: key, Value: showValue(item), Want: wantFor("diag.mounts")}}
	}
	var ps []Problem
	for k, v := range tbl {
		switch k = strings.ToLower(k); k {
		case "path":
			if s, ok := v.(string); ok {
				m.Path = s
			} else {
				ps = append(ps, Problem{Key: key + ".path", Value: showValue(v), Want: "an absolute mount point path"})
			}
		case "options":
			if l, ok := stringList(v); ok && l != nil {
				m.Options = l
			} else {
				ps = append(ps, Problem{Key: key + ".options", Value: showValue(v), Want: `a list of mount options, e.g. ["noatime", "compress=zstd:3"]`})
			}
		default:
			ps = append(ps, Problem{Key: key + "." + k, Want: "unknown key; a mount allows path, options"})
		}
	}
	return m, ps
}

// parsePercent accepts a number 0..100 from TOML, YAML, JSON or the
// environment.
func parsePercent(raw any) (float64, bool) {
	var f float64
	switch v := raw.(type) {
	case int:
		f = float64(v)
	case int64:
		f = float64(v)
	case uint64:
		f = float64(v)
	case float64:
		f = v
	case string:
		p, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			return 0, false
		}
		f = p
	default:
		return 0, false
	}
	return f, f >= 0 && f <= 100
}

// unitName is a systemd unit name with its type suffix.
var unitName = regexp.MustCompile(`^[A-Za-z0-9:_.\\@-]+\.(service|socket|target|timer|mount|automount|path|slice|scope|swap|device)$`)

// busName is a D-Bus well-known name: two or more dot-separated elements
// of letters, digits, _ and -, none starting with a digit.
var busName = regexp.MustCompile(`^[A-Za-z_-][A-Za-z0-9_-]*(\.[A-Za-z_-][A-Za-z0-9_-]*)+$`)

// busAddress is a D-Bus server address: transport:key=value,...
var busAddress = regexp.MustCompile(`^[a-z][a-z0-9-]*:([^;=,\s]+=[^;,\s]*(,[^;=,\s]+=[^;,\s]*)*)?(;[a-z][a-z0-9-]*:\S*)*$`)

// validateDiag checks the [diag] table.
func (c Config) validateDiag() []Problem {
	d := c.Diag
	var ps []Problem
	bad := func(key string, v any) {
		ps = append(ps, Problem{Key: key, Value: showValue(v), Want: wantFor(key)})
	}
	if d.Timeout <= 0 || time.Duration(d.Timeout) > maxDiagTimeout {
		bad("diag.timeout", d.Timeout)
	}
	if d.FreeMinPercent < 0 || d.FreeMinPercent > 100 {
		bad("diag.free_min_percent", d.FreeMinPercent)
	}
	seen := map[string]bool{}
	for i, m := range d.Mounts {
		key := fmt.Sprintf("diag.mounts[%d]", i)
		if !filepath.IsAbs(m.Path) || seen[filepath.Clean(m.Path)] {
			ps = append(ps, Problem{Key: key + ".path", Value: showValue(m.Path), Want: "a unique absolute mount point path"})
		}
		seen[filepath.Clean(m.Path)] = true
		for j, o := range m.Options {
			if o == "" || strings.ContainsAny(o, ", \t\n") {
				ps = append(ps, Problem{Key: fmt.Sprintf("%s.options[%d]", key, j), Value: showValue(o), Want: `one mount option without commas or spaces, e.g. "compress=zstd:9"`})
			}
		}
	}
	for i, u := range d.Services {
		if !unitName.MatchString(u) || slices.Index(d.Services, u) != i {
			bad(fmt.Sprintf("diag.services[%d]", i), u)
		}
	}
	for i, n := range d.DBusNames {
		if len(n) > 255 || !busName.MatchString(n) || slices.Index(d.DBusNames, n) != i {
			bad(fmt.Sprintf("diag.dbus_names[%d]", i), n)
		}
	}
	if d.DBusAddress != "" && !busAddress.MatchString(d.DBusAddress) {
		bad("diag.dbus_address", d.DBusAddress)
	}
	if d.SSHD != "" && (strings.ContainsAny(d.SSHD, " \t\n") || (strings.Contains(d.SSHD, "/") && !filepath.IsAbs(d.SSHD))) {
		bad("diag.sshd", d.SSHD)
	}
	return ps
}

// diagTOML writes the [diag] table for `config show`.
func diagTOML(line func(key, name, value string), d DiagConfig) {
	strs := func(l []string) string {
		q := make([]string, len(l))
		for i, s := range l {
			q[i] = tomlString(s)
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	line("diag.timeout", "timeout", tomlString(d.Timeout.String()))
	line("diag.free_min_percent", "free_min_percent", strconv.FormatFloat(d.FreeMinPercent, 'f', -1, 64))
	ms := make([]string, len(d.Mounts))
	for i, m := range d.Mounts {
		ms[i] = fmt.Sprintf("{ path = %s, options = %s }", tomlString(m.Path), strs(m.Options))
	}
	line("diag.mounts", "mounts", "["+strings.Join(ms, ", ")+"]")
	line("diag.services", "services", strs(d.Services))
	line("diag.dbus_names", "dbus_names", strs(d.DBusNames))
	line("diag.dbus_address", "dbus_address", tomlString(d.DBusAddress))
	line("diag.sync_lag_max", "sync_lag_max", strconv.FormatUint(d.SyncLagMax, 10))
	line("diag.sshd", "sshd", tomlString(d.SSHD))
}
