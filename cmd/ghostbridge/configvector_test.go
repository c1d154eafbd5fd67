package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestVectorAPIKeyTextNeverEchoed puts a Qdrant API key where the path
// of its file belongs, in the config file (as a string, a number and a
// list) and in the environment, and checks that no command echoes it:
// `config validate` (text and JSON), a vector command and diag.
func TestVectorAPIKeyTextNeverEchoed(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "chain.db")
	const secret = "qdr9SECRETs3cretKEY/x+Zw=="
	cases := []struct {
		name, toml string
		env        cliEnv
		leak       string
	}{
		{"string", "[vector]\napi_key_file = \"" + secret + "\"\n", nil, "SECRET"},
		{"string with spaces", "[vector]\napi_key_file = \"  " + secret + "\"\n", nil, "SECRET"},
		{"number", "[vector]\napi_key_file = 918273645546372819\n", nil, "918273645546372819"},
		{"list", "[vector]\napi_key_file = [\"" + secret + "\"]\n", nil, "SECRET"},
		{"environment", "", cliEnv{"GHOSTBRIDGE_VECTOR_API_KEY_FILE": secret}, "SECRET"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := filepath.Join(dir, "c"+string(rune('a'+i))+".toml")
			if err := os.WriteFile(cfg, []byte(c.toml), 0o600); err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{
				{"--config", cfg, "config", "validate"},
				{"--config", cfg, "config", "validate", "--format", "json"},
				{"--config", cfg, "config", "show"},
				{"--config", cfg, "--db", db, "vector", "status"},
				{"--config", cfg, "--db", db, "diag", "--only", "vector"},
			} {
				r := runCLI(t, c.env, args...)
				if r.code == exitOK {
					t.Errorf("%v: exit 0, want the key refused", args)
				}
				out := r.stdout + r.stderr
				if strings.Contains(out, c.leak) {
					t.Errorf("%v: output shows the key:\n%s", args, out)
				}
				if !strings.Contains(out, "vector.api_key_file") {
					t.Errorf("%v: output does not name vector.api_key_file:\n%s", args, out)
				}
			}
		})
	}
}

// TestVectorPathsShown: a path that is wrong only in shape (relative
// paths are not shown, they may be a key) is still shown when it is
// absolute, and vector.tls_ca_file, which names a public CA bundle, is
// always shown.
func TestVectorPathsShown(t *testing.T) {
	dir := t.TempDir()
	cases := []struct{ toml, want string }{
		{"[vector]\napi_key_file = \"/etc/qdrant/\"\n", `vector.api_key_file = "/etc/qdrant/"`},
		{"[vector]\ntls = true\ntls_ca_file = \"ca.pem\"\n", `vector.tls_ca_file = "ca.pem"`},
		{"[vector]\ntls_ca_file = \"/etc/ssl/ca.pem\"\n", `vector.tls_ca_file = "/etc/ssl/ca.pem"`},
	}
	for i, c := range cases {
		cfg := filepath.Join(dir, "c"+string(rune('a'+i))+".toml")
		if err := os.WriteFile(cfg, []byte(c.toml), 0o600); err != nil {
			t.Fatal(err)
		}
		r := runCLI(t, nil, "--config", cfg, "config", "validate")
		if r.code != exitUsage || !strings.Contains(r.stdout+r.stderr, c.want) {
			t.Errorf("%q: exit %d, output %q; want exit 2 showing %s", c.toml, r.code, r.stdout+r.stderr, c.want)
		}
	}
}
