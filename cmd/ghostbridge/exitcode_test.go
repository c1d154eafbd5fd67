package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestExitCodesHelpMatchesREADME: cases that README's exit-code table
// lists under a code are listed under the same code by `help exit-codes`
// (and so the man page). The wording differs (the help is compact), so
// each case is a phrase both must carry, compared without quotes,
// backticks, case or line breaks.
func TestExitCodesHelpMatchesREADME(t *testing.T) {
	cases := map[string][]string{
		"1": {
			"another snap run", "net try rolled back", "net down refused",
			"rolled back unconfirmed", "net up --force",
			"a block qdrant rejects for good", "vector sync without --skip-poison",
			"a wrong qdrant api key",
			"vm stop of a guest that is paused, crashed or suspended", "vm list that could not read every guest",
		},
		"2": {
			"unknown flag or command", "missing config file named by --config", "not a chain",
			"source that is not a subvolume", "snapshot directory on another filesystem or bound to another chain",
			"not a key or readable by others", "chain prove before any checkpoint",
			"chain.checkpoint_file inside the database's directory",
			"an api key file or ca bundle that is unreadable", "[vector] or [vm] value",
			"vcpus 0", "malformed pci address", "unknown bridge", "name in use",
			"pci device missing or iommu off", "more than the host has",
			"a vm that does not exist or that ghostbridge did not create",
			"a qdrant collection whose vector size or distance",
		},
	}
	readme, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for code, phrases := range cases {
		row := readmeExitRow(t, string(readme), code)
		help := helpExitEntry(t, code)
		for _, p := range phrases {
			if !strings.Contains(row, p) {
				t.Errorf("README exit %s lacks %q (fix this test's list or the README)", code, p)
			}
			if !strings.Contains(help, p) {
				t.Errorf("help exit-codes, exit %s, lacks %q, which README's table lists", code, p)
			}
		}
	}
}

// normaliseDoc makes README and help text comparable.
func normaliseDoc(s string) string {
	s = strings.NewReplacer("`", "", `"`, "", " / ", "/").Replace(strings.ToLower(s))
	return strings.Join(strings.Fields(s), " ")
}

// readmeExitRow is the meaning column of code's row in README's table.
func readmeExitRow(t *testing.T, readme, code string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^\| ` + code + ` \| (.*) \|$`).FindStringSubmatch(readme)
	if m == nil {
		t.Fatalf("README has no exit-code row for %s", code)
	}
	return normaliseDoc(m[1])
}

// helpExitEntry is code's entry in exitCodesHelp, up to the next code.
func helpExitEntry(t *testing.T, code string) string {
	t.Helper()
	m := regexp.MustCompile(`(?ms)^  ` + code + ` +(.*?)^  [0-9]`).FindStringSubmatch(exitCodesHelp)
	if m == nil {
		t.Fatalf("help exit-codes has no entry for %s", code)
	}
	return normaliseDoc(m[1])
}
