package nixcheck

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// ModuleOption is one option module.nix declares by hand (everything but
// the settings tree, which comes from nix/settings.json).
type ModuleOption struct {
	Name        string // full option path, services.ghostbridge.snapshots.enable
	Default     string // Nix text of the default (defaultText when given)
	DefaultMD   bool   // Default is Markdown (literalMD), not Nix
	Description string
}

// OptionPrefix is where the module's options live.
const OptionPrefix = "services.ghostbridge."

var (
	declLine   = regexp.MustCompile(`^    ([A-Za-z][A-Za-z0-9.]*) = (mkOption \{|mkEnableOption "(.*)";)$`)
	bareOption = regexp.MustCompile(`(^|[^.A-Za-z0-9_])(mkOption|mkEnableOption)\b`)
	inheritTok = regexp.MustCompile(`^\s+(mkOption|mkEnableOption)$`)
	fieldLine  = regexp.MustCompile(`^      (default|defaultText|description) = (.*);$`)
)

// ModuleOptions reads the hand-declared options out of module.nix, which
// follows one convention so this stays reliable: each option is declared
// on its own line, four spaces in, as `NAME = mkOption {` (its fields six
// spaces in, closed by `    };`) or `NAME = mkEnableOption "...";`. Any
// other bare use of mkOption or mkEnableOption (not lib.mkOption, and not
// the inherit list) is an error, so a declaration in another shape cannot
// slip past.
func ModuleOptions(src []byte) ([]ModuleOption, error) {
	var out []ModuleOption
	var cur *ModuleOption
	var multi *strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(src))
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if multi != nil {
			if strings.TrimSpace(line) == "'';" {
				cur.Description = strings.Join(strings.Fields(multi.String()), " ")
				multi = nil
				continue
			}
			multi.WriteString(line + "\n")
			continue
		}
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		if m := declLine.FindStringSubmatch(line); m != nil {
			o := ModuleOption{Name: OptionPrefix + m[1]}
			if strings.HasPrefix(m[2], "mkEnableOption") {
				o.Default = "false"
				o.Description = "Whether to enable " + unquote(`"`+m[3]+`"`) + "."
				out = append(out, o)
				continue
			}
			out = append(out, o)
			cur = &out[len(out)-1]
			continue
		}
		if cur != nil {
			if line == "    };" {
				if cur.Description == "" {
					return nil, fmt.Errorf("module.nix:%d: %s has no description", n, cur.Name)
				}
				cur = nil
				continue
			}
			if m := fieldLine.FindStringSubmatch(line); m != nil {
				switch m[1] {
				case "default":
					if cur.Default == "" {
						cur.Default = m[2]
					}
				case "defaultText":
					text, isMD := strings.CutPrefix(m[2], "literalMD ")
					cur.Default = unquote(strings.TrimPrefix(text, "literalExpression "))
					cur.DefaultMD = isMD
				case "description":
					cur.Description = unquote(m[2])
				}
			} else if line == "      description = ''" {
				multi = &strings.Builder{}
			}
			continue
		}
		if bareOption.MatchString(line) && !inheritTok.MatchString(line) {
			return nil, fmt.Errorf("module.nix:%d: option declared outside the convention (NAME = mkOption { or NAME = mkEnableOption \"...\"; four spaces in): %s", n, strings.TrimSpace(line))
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if cur != nil {
		return nil, fmt.Errorf("module.nix: %s is not closed by a line \"    };\"", cur.Name)
	}
	return out, nil
}

func unquote(s string) string {
	if u, err := strconv.Unquote(s); err == nil {
		return u
	}
	return s
}

// Table renders the README's options reference: the module's own options,
// then every settings key with its type, default and description.
func Table(opts []ModuleOption, root *Spec) string {
	var b strings.Builder
	b.WriteString("| Option | Default | Description |\n|---|---|---|\n")
	for _, o := range opts {
		def := "`" + cell(o.Default) + "`"
		if o.DefaultMD {
			def = cell(o.Default)
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", o.Name, def, cell(o.Description))
	}
	b.WriteString("\nSettings: `" + OptionPrefix + "settings.<key>`, written to the config file as TOML; the defaults are the CLI's.\n\n")
	b.WriteString("| Key | Type | Default | Description |\n|---|---|---|---|\n")
	for _, key := range Keys(root) {
		s := Lookup(root, key)
		def := "required"
		if s.HasDefault {
			j, _ := json.Marshal(s.Default)
			def = "`" + cell(string(j)) + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", key, cell(typeText(s)), def, cell(s.Description))
		fieldRows(&b, key, s)
	}
	return b.String()
}

// fieldRows adds a row per field of a list of submodules (net.bridges[].name).
func fieldRows(b *strings.Builder, key string, s *Spec) {
	if s.Type != "list" || s.Of.Type != "submodule" {
		return
	}
	names := make([]string, 0, len(s.Of.Options))
	for n := range s.Of.Options {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		f := s.Of.Options[n]
		def := "required"
		if f.HasDefault {
			j, _ := json.Marshal(f.Default)
			def = "`" + cell(string(j)) + "`"
		}
		fk := key + "[]." + n
		fmt.Fprintf(b, "| `%s` | %s | %s | %s |\n", fk, cell(typeText(f)), def, cell(f.Description))
		fieldRows(b, fk, f)
	}
}

func typeText(s *Spec) string {
	var t string
	switch s.Type {
	case "str":
		t = "string"
	case "duration":
		t = "duration"
	case "bool":
		t = "bool"
	case "int", "number":
		t = s.Type
		switch {
		case s.Max != nil:
			t += fmt.Sprintf(" %v..%v", *s.Min, *s.Max)
		case s.Min != nil:
			t += fmt.Sprintf(" >= %v", *s.Min)
		}
	case "enum":
		t = "one of " + strings.Join(s.Values, ", ")
	case "list":
		t = "list of " + typeText(s.Of)
	case "submodule":
		names := make([]string, 0, len(s.Options))
		for n := range s.Options {
			names = append(names, n)
		}
		sort.Strings(names)
		t = "{" + strings.Join(names, ", ") + "}"
	}
	if s.Nullable {
		t = "null or " + t
	}
	return t
}

// cell makes s safe inside a Markdown table cell: no pipes, no line
// breaks, and no "<name>" for a renderer to take as HTML.
func cell(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ", "<", "&lt;", ">", "&gt;").Replace(s)
}

// README markers around the generated options reference.
const (
	TableBegin = "<!-- BEGIN nixos-options: generated from nix/module.nix and nix/settings.json; go test ./internal/nixcheck -run TestREADMEOptionsTable -update -->"
	TableEnd   = "<!-- END nixos-options -->"
)

// ReplaceTable returns readme with the text between the markers replaced
// by table, or an error when the markers are missing.
func ReplaceTable(readme []byte, table string) ([]byte, error) {
	s := string(readme)
	i := strings.Index(s, TableBegin)
	j := strings.Index(s, TableEnd)
	if i < 0 || j < i {
		return nil, fmt.Errorf("README.md has no %q ... %q block", TableBegin, TableEnd)
	}
	return []byte(s[:i+len(TableBegin)] + "\n" + table + s[j:]), nil
}
