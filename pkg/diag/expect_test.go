package diag_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/ghostbridge/ghostbridge/pkg/diag"
)

// expectResult fails unless res has status want and, when it is not
// passing, a hint; its detail must contain every string in detail and its
// hint every string in hint.
func expectResult(t *testing.T, res diag.Result, want diag.Status, detail []string, hint []string) {
	t.Helper()
	if res.Status != want {
		t.Errorf("%s: status %s, want %s (detail %q, hint %q)", res.Name, res.Status, want, res.Detail, res.Hint)
		return
	}
	if want != diag.StatusPass && want != diag.StatusSkip && res.Hint == "" {
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

// expectCheck is expectResult for the check called name in r, with one
// string each for the hint and the detail ("" asserts nothing).
func expectCheck(t *testing.T, r diag.Report, name string, status diag.Status, hint, detail string) {
	t.Helper()
	expectResult(t, hostResult(t, r, name), status, []string{detail}, []string{hint})
}

func hostResult(t *testing.T, r diag.Report, name string) diag.Result {
	t.Helper()
	for _, res := range r.Checks {
		if res.Name == name {
			return res
		}
	}
	t.Fatalf("no check %s in report:\n%s", name, hostDump(r))
	return diag.Result{}
}

func hostDump(r diag.Report) string {
	b, _ := json.MarshalIndent(r.Checks, "", "  ")
	return string(b)
}
