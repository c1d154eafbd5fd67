package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// This file is the only place that reads viper. Layers, lowest first:
// defaults, the config file, GHOSTBRIDGE_* environment, flags.

// flagForKey names the flag that overrides a config key, where one exists
// on the command being run.
var flagForKey = map[string]string{
	"db":            "db",
	"log.level":     "log-level",
	"log.format":    "log-format",
	"snap.sources":  "source",
	"snap.dir":      "dir",
	"snap.interval": "interval",
	"snap.keep":     "keep",
	// The same flag name on two nouns: keyFlag tells them apart.
	"snap.metrics_listen":   metricsListenFlag,
	"vector.metrics_listen": metricsListenFlag,
}

// keyFlag returns the flag of cmd that overrides key, or nil. A key of a
// table named after a command noun ([snap], [vector], ...) is overridden
// only by the commands under that noun: flag names repeat across nouns
// with other meanings (--source on vector search filters by source;
// --metrics-listen on snap run and on vector sync names two listeners).
func keyFlag(cmd *cobra.Command, key string) *pflag.Flag {
	name, ok := flagForKey[key]
	if !ok {
		return nil
	}
	if table, _, found := strings.Cut(key, "."); found && isNoun(cmd.Root(), table) && nounOf(cmd) != table {
		return nil
	}
	return cmd.Flags().Lookup(name)
}

// isNoun reports whether root has a command named name.
func isNoun(root *cobra.Command, name string) bool {
	for _, c := range root.Commands() {
		if c.Name() == name {
			return true
		}
	}
	return false
}

// nounOf is the first word of cmd's path after the root: "snap" for
// "ghostbridge snap run"; "" for the root itself.
func nounOf(cmd *cobra.Command) string {
	for c := cmd; c.HasParent(); c = c.Parent() {
		if !c.Parent().HasParent() {
			return c.Name()
		}
	}
	return ""
}

// envPrefix starts every environment variable ghostbridge reads for config.
const envPrefix = "GHOSTBRIDGE_"

// envForKey is the environment variable for a key: "snap.interval" ->
// GHOSTBRIDGE_SNAP_INTERVAL.
func envForKey(key string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// configFileError is a config file that cannot be found, read or parsed.
type configFileError struct {
	Path string
	Err  error
}

func (e *configFileError) Error() string {
	msg := strings.Join(strings.Fields(e.Err.Error()), " ")
	return fmt.Sprintf("config file %s: %s", e.Path, msg)
}

func (e *configFileError) Unwrap() error { return e.Err }

// loadedConfig is a configuration together with where each value came from.
type loadedConfig struct {
	Config  Config            `json:"config"`
	File    string            `json:"file"`
	Origins map[string]string `json:"origins"`
}

// configSource says which file to read and whether the operator named it.
type configSource struct {
	Path     string
	Explicit bool
}

// configFile picks the config file: --config, then GHOSTBRIDGE_CONFIG, then
// the first default that exists. A missing default is not an error.
func (a *App) configFile(cmd *cobra.Command) (configSource, error) {
	if f := cmd.Flags().Lookup("config"); f != nil && f.Changed {
		return configSource{Path: f.Value.String(), Explicit: true}, nil
	}
	if p := a.Env(envPrefix + "CONFIG"); p != "" {
		return configSource{Path: p, Explicit: true}, nil
	}
	for _, p := range a.DefaultConfigFiles {
		_, err := os.Stat(p)
		if err == nil {
			return configSource{Path: p}, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return configSource{}, &configFileError{Path: p, Err: err}
		}
	}
	return configSource{}, nil
}

// loadConfig reads the layers into a.v and decodes them. With layered false
// only defaults and the file count (for `config validate FILE`). The error
// is a *configFileError or a *ConfigError listing every problem.
func (a *App) loadConfig(cmd *cobra.Command, src configSource, layered bool) (loadedConfig, error) {
	v := a.v
	lc := loadedConfig{File: src.Path, Origins: map[string]string{}}
	var problems []Problem
	if src.Path != "" {
		fileKeys, err := readConfigFile(v, src.Path)
		if err != nil {
			return lc, err
		}
		problems = append(problems, unknownKeys(fileKeys, src.Path)...)
		for _, k := range fileKeys {
			lc.Origins[k] = src.Path
		}
	}
	if layered {
		env := map[string]any{}
		for _, k := range configKeys {
			name := envForKey(k.Key)
			if val := a.Env(name); val != "" {
				setNested(env, k.Key, val)
				lc.Origins[k.Key] = name
			}
		}
		if err := v.MergeConfigMap(env); err != nil {
			return lc, fmt.Errorf("environment: %w", err)
		}
		for _, k := range configKeys {
			f := keyFlag(cmd, k.Key)
			if f == nil {
				continue
			}
			if sv, ok := f.Value.(pflag.SliceValue); ok {
				// viper would re-split the values on commas; a repeated
				// flag keeps each value whole, commas in paths included.
				if f.Changed {
					v.Set(k.Key, sv.GetSlice())
					lc.Origins[k.Key] = "--" + f.Name
				}
				continue
			}
			if err := v.BindPFlag(k.Key, f); err != nil {
				return lc, fmt.Errorf("flag --%s: %w", f.Name, err)
			}
			if f.Changed {
				lc.Origins[k.Key] = "--" + f.Name
			}
		}
	}
	if err := setDefaults(v); err != nil {
		return lc, err
	}
	for _, k := range configKeys {
		if _, ok := lc.Origins[k.Key]; !ok {
			lc.Origins[k.Key] = "default"
		}
	}

	cfg, decodeProblems := decodeConfig(v.Get)
	problems = append(problems, decodeProblems...)
	if err := cfg.Validate(); err != nil {
		var ce *ConfigError
		if errors.As(err, &ce) {
			for _, p := range ce.Problems {
				if !coveredBy(p.Key, decodeProblems) {
					problems = append(problems, p)
				}
			}
		}
	}
	lc.Config = cfg
	if len(problems) > 0 {
		for i := range problems {
			if problems[i].Origin == "" {
				problems[i].Origin = originOf(lc.Origins, problems[i].Key)
			}
		}
		return lc, &ConfigError{Problems: dedupe(problems)}
	}
	return lc, nil
}

// readConfigFile loads path into v by its extension and returns the keys
// the file sets, lower-cased and dotted.
func readConfigFile(v *viper.Viper, path string) ([]string, error) {
	ext := strings.TrimPrefix(strings.ToLower(filepath.Ext(path)), ".")
	switch ext {
	case "toml", "yaml", "yml", "json":
	default:
		return nil, &configFileError{Path: path, Err: fmt.Errorf("unknown extension %q; want .toml, .yaml, .yml or .json", filepath.Ext(path))}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, &configFileError{Path: path, Err: err}
	}
	return readConfigBytes(v, ext, path, b)
}

func readConfigBytes(v *viper.Viper, ext, path string, b []byte) ([]string, error) {
	v.SetConfigType(ext)
	if err := v.ReadConfig(bytes.NewReader(b)); err != nil {
		var pe viper.ConfigParseError
		if errors.As(err, &pe) {
			err = pe.Unwrap()
		}
		return nil, &configFileError{Path: path, Err: err}
	}
	// Nothing but the file is in v yet, so AllKeys is the file's keys.
	keys := v.AllKeys()
	slices.Sort(keys)
	return keys, nil
}

// unknownKeys reports file keys that are not config keys, and scalars where
// a table is expected.
func unknownKeys(keys []string, path string) []Problem {
	var ps []Problem
	for _, k := range keys {
		if slices.ContainsFunc(configKeys, func(c struct{ Key, Want string }) bool { return c.Key == k }) {
			continue
		}
		if slices.Contains(configTables, k) {
			ps = append(ps, Problem{Key: k, Origin: path, Want: "a table with keys " + strings.Join(tableKeys(k), ", ")})
			continue
		}
		want := "unknown key; want one of " + strings.Join(tableKeys(""), ", ")
		if table, _, ok := strings.Cut(k, "."); ok && slices.Contains(configTables, table) {
			want = fmt.Sprintf("unknown key; [%s] allows %s", table, strings.Join(tableKeys(table), ", "))
		}
		ps = append(ps, Problem{Key: k, Origin: path, Want: want})
	}
	return ps
}

// configTables are the tables a config file may hold.
var configTables = []string{"log", "snap", "chain", "vector", "net", "vm", "diag"}

// tableKeys lists the keys directly under table ("" is the top level).
func tableKeys(table string) []string {
	var out []string
	for _, c := range configKeys {
		switch {
		case table == "" && !strings.Contains(c.Key, "."):
			out = append(out, c.Key)
		case table == "" && !slices.Contains(out, "["+strings.SplitN(c.Key, ".", 2)[0]+"]"):
			out = append(out, "["+strings.SplitN(c.Key, ".", 2)[0]+"]")
		case strings.HasPrefix(c.Key, table+"."):
			out = append(out, strings.TrimPrefix(c.Key, table+"."))
		}
	}
	return out
}

func setNested(m map[string]any, key string, val any) {
	parts := strings.Split(key, ".")
	for _, p := range parts[:len(parts)-1] {
		sub, ok := m[p].(map[string]any)
		if !ok {
			sub = map[string]any{}
			m[p] = sub
		}
		m = sub
	}
	m[parts[len(parts)-1]] = val
}

// originOf finds where a (possibly indexed) key's value came from.
func originOf(origins map[string]string, key string) string {
	base, _, _ := strings.Cut(key, "[")
	o := origins[base]
	if o == "default" {
		return ""
	}
	return o
}

// coveredBy reports whether a problem with key was already reported while
// decoding (for the same key, or a part of it such as one tier).
func coveredBy(key string, decoded []Problem) bool {
	for _, d := range decoded {
		if key == d.Key || strings.HasPrefix(key, d.Key+".") || strings.HasPrefix(d.Key, key+".") {
			return true
		}
	}
	return false
}

func dedupe(ps []Problem) []Problem {
	seen := map[string]bool{}
	out := ps[:0]
	for _, p := range ps {
		if s := p.String(); !seen[s] {
			seen[s] = true
			out = append(out, p)
		}
	}
	return out
}

// setDefaults gives viper the default of every config key, read from the
// JSON form of defaultConfig (the form `config show --format json`
// prints), so a key's default is written once, in defaultConfig. Keys
// whose default is null (unset) get none.
func setDefaults(v *viper.Viper) error {
	b, err := json.Marshal(defaultConfig())
	if err != nil {
		return fmt.Errorf("defaults: %w", err)
	}
	var tree map[string]any
	if err := json.Unmarshal(b, &tree); err != nil {
		return fmt.Errorf("defaults: %w", err)
	}
	for _, k := range configKeys {
		var val any = tree
		for part := range strings.SplitSeq(k.Key, ".") {
			m, _ := val.(map[string]any)
			val = m[part]
		}
		if val != nil {
			v.SetDefault(k.Key, val)
		}
	}
	return nil
}
