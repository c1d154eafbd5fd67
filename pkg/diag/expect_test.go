package diag

// The result helpers (and the NetHost and SSHDHost fixtures) are exported
// from the internal test package so that one copy serves the white-box
// tests here (snapshots, chain, the benchmark) and the black-box ones
// (package diag_test, through expect_ext_test.go). They exist only in
// test builds.

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// ExpectResult fails unless res has status want and, when it is not
// passing, a hint; its detail must contain every string in detail and its
// hint every string in hint.
func ExpectResult(t *testing.T, res Result, want Status, detail []string, hint []string) {
	t.Helper()
	if res.Status != want {
		t.Errorf("%s: status %s, want %s (detail %q, hint %q)", res.Name, res.Status, want, res.Detail, res.Hint)
		return
	}
	if want != StatusPass && want != StatusSkip && res.Hint == "" {
		t.Errorf("%s: %s without a hint (detail %q)", res.Name, want, res.Detail)
	}
	for _, s := range detail {
		if !strings.Contains(res.Detail, s) {
			t.Errorf("%s: detail %q lacks %q", res.Name, res.Detail, s)
		}
	}
	for _, s := range hint {
		if !strings.Contains(res.Hint, s) {
			t.Errorf("%s: hint %q lacks %q", res.Name, res.Hint, s)
		}
	}
}

// ExpectCheck is ExpectResult for the check called name in r, with one
// string each for the hint and the detail ("" asserts nothing).
func ExpectCheck(t *testing.T, r Report, name string, status Status, hint, detail string) {
	t.Helper()
	ExpectResult(t, HostResult(t, r, name), status, []string{detail}, []string{hint})
}

// HostResult is the result of the check called name in r.
func HostResult(t *testing.T, r Report, name string) Result {
	t.Helper()
	for _, res := range r.Checks {
		if res.Name == name {
			return res
		}
	}
	t.Fatalf("no check %s in report:\n%s", name, HostDump(r))
	return Result{}
}

// HostDump shows every result of r, for failure messages.
func HostDump(r Report) string {
	b, _ := json.MarshalIndent(r.Checks, "", "  ")
	return string(b)
}

// RunGroup runs the checks of one group with timeout and returns their
// results by name, failing unless there are want of them.
func RunGroup(t *testing.T, checks []Check, timeout time.Duration, want int) map[string]Result {
	t.Helper()
	r := Run(t.Context(), checks, Options{Timeout: timeout})
	out := map[string]Result{}
	for _, res := range r.Checks {
		out[res.Name] = res
	}
	if len(out) != want {
		t.Fatalf("%d checks, want %d:\n%s", len(out), want, HostDump(r))
	}
	return out
}
