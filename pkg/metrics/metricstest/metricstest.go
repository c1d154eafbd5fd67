// Package metricstest is test support for the metrics ghostbridge
// exposes: it reads the PromQL expressions of the checked-in Grafana
// dashboard and the metric names a registry or `ghostbridge diag`
// exposes, so tests in pkg/metrics and cmd/ghostbridge check the
// dashboard against the same lists.
//
// It is imported by tests only; it never serves, registers or changes
// metrics.
package metricstest

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"

	dto "github.com/prometheus/client_model/go"

	"github.com/ghostbridge/ghostbridge/pkg/diag"
)

// metricToken finds the metric names in a PromQL expression: every name
// ghostbridge's processes and diag expose starts with one of these
// prefixes.
var metricToken = regexp.MustCompile(`\b(?:ghostbridge|go|process)_[a-zA-Z0-9_:]*`)

// Expr is one PromQL expression of a dashboard and the metric names it
// uses.
type Expr struct {
	Expr    string
	Metrics []string
}

// DashboardExprs reads the Grafana dashboard at path and returns every
// PromQL expression in it: panel targets ("expr") and query variables
// ("definition").
func DashboardExprs(path string) ([]Expr, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var exprs []Expr
	var walk func(v any, key string)
	walk = func(v any, key string) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				walk(e, k)
			}
		case []any:
			for _, e := range x {
				walk(e, key)
			}
		case string:
			if key == "expr" || key == "definition" {
				exprs = append(exprs, Expr{Expr: x, Metrics: metricToken.FindAllString(x, -1)})
			}
		}
	}
	walk(doc, "")
	return exprs, nil
}

// Names lists the metric names of mfs, with the _bucket, _sum and _count
// series of histograms and summaries, as PromQL names them.
func Names(mfs []*dto.MetricFamily) map[string]bool {
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
		if mf.GetType() == dto.MetricType_HISTOGRAM || mf.GetType() == dto.MetricType_SUMMARY {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				names[mf.GetName()+s] = true
			}
		}
	}
	return names
}

// DiagNames lists the metrics `ghostbridge diag --format prometheus` and
// --textfile write, from diag.Registry itself, for a report with one
// check (so the per-check families are present).
func DiagNames() (map[string]bool, error) {
	r := diag.Report{Checks: []diag.Result{{Name: "net.bridges", Group: "net", Status: diag.StatusPass}}}
	mfs, err := diag.Registry(r).Gather()
	if err != nil {
		return nil, fmt.Errorf("gather diag metrics: %w", err)
	}
	return Names(mfs), nil
}

// Unknown returns, sorted and once each, the metric names exprs use that
// known does not have.
func Unknown(exprs []Expr, known map[string]bool) []string {
	var out []string
	for _, e := range exprs {
		for _, n := range e.Metrics {
			if !known[n] && !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	slices.Sort(out)
	return out
}
