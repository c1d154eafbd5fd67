package metrics

import (
	"encoding/json"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/ghostbridge/ghostbridge/pkg/chain"
	"github.com/ghostbridge/ghostbridge/pkg/metrics/metricstest"
)

// dashboardPath is the checked-in Grafana dashboard, from this package's
// directory.
const dashboardPath = "../../dashboards/ghostbridge.json"

// TestDashboardMetricsExist: every metric the dashboard queries is one
// the registries expose (or a documented diag metric), so renaming a
// metric fails here. cmd/ghostbridge checks the same against the real
// processes.
func TestDashboardMetricsExist(t *testing.T) {
	reg := NewRegistry("x")
	snapM := NewSnap(reg, SnapOptions{Interval: time.Second, Checkpoints: true})
	snapM.SetHead(chain.Block{Height: 1, Time: time.Now()}) // head age is absent until then
	v := NewVector(reg, VectorOptions{Collection: "c"})
	v.ObserveQdrantError("upsert", codes.Unavailable) // a vector with no child is not gathered
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	known := metricstest.Names(mfs)
	diagNames, err := metricstest.DiagNames()
	if err != nil {
		t.Fatal(err)
	}
	maps.Copy(known, diagNames)
	exprs, err := metricstest.DashboardExprs(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(exprs) < 20 {
		t.Fatalf("only %d expressions in %s", len(exprs), dashboardPath)
	}
	used := map[string]bool{}
	for _, e := range exprs {
		if len(e.Metrics) == 0 {
			t.Errorf("expression %q uses no ghostbridge, go_ or process_ metric", e.Expr)
		}
		for _, n := range e.Metrics {
			used[n] = true
		}
	}
	if unknown := metricstest.Unknown(exprs, known); len(unknown) > 0 {
		t.Errorf("dashboard uses metrics that are not exposed: %v", unknown)
	}
	// The panels the dashboard promises are there.
	for _, want := range []string{
		"ghostbridge_snap_ticks_total", "ghostbridge_snap_tick_duration_seconds_bucket",
		"ghostbridge_snap_ticks_missed_total", "ghostbridge_snap_snapshots_live",
		"ghostbridge_snap_snapshot_create_duration_seconds_bucket", "ghostbridge_snap_snapshot_delete_duration_seconds_bucket",
		"ghostbridge_chain_height", "ghostbridge_chain_head_age_seconds", "ghostbridge_chain_checkpoint_timestamp_seconds",
		"ghostbridge_vector_sync_lag_blocks", "ghostbridge_vector_sync_cursor", "ghostbridge_vector_qdrant_errors_total",
		"process_resident_memory_bytes", "process_cpu_seconds_total", "ghostbridge_diag_check_status",
		"ghostbridge_diag_status", "ghostbridge_diag_last_run_timestamp_seconds",
	} {
		if !used[want] {
			t.Errorf("dashboard does not use %s", want)
		}
	}
}

// TestDashboardDiagPanels: the diag panels follow the diag host variable
// (node exporter's instance, not the loops'), and none turns a missing
// diag textfile into a reassuring number with "or vector(0)": no data
// must show as no data.
func TestDashboardDiagPanels(t *testing.T) {
	exprs, err := metricstest.DashboardExprs(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var diagExprs int
	for _, e := range exprs {
		if strings.Contains(e.Expr, "vector(") {
			t.Errorf("expression %q makes up a value when its series are missing", e.Expr)
		}
		if !slices.ContainsFunc(e.Metrics, func(n string) bool { return strings.HasPrefix(n, "ghostbridge_diag_") }) {
			continue
		}
		diagExprs++
		if strings.HasPrefix(e.Expr, "label_values(") {
			continue // the host variable's own query
		}
		if !strings.Contains(e.Expr, `instance=~"$host"`) {
			t.Errorf("diag expression %q does not filter by the host variable", e.Expr)
		}
	}
	if diagExprs < 6 {
		t.Errorf("%d diag expressions, want the overall result, its age, failing, warning, the table and the host variable", diagExprs)
	}
}

// TestDashboardDatasource: every query goes through the dashboard's
// Prometheus data source variable, so the dashboard imports anywhere.
func TestDashboardDatasource(t *testing.T) {
	b, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID        string `json:"uid"`
		Templating struct {
			List []struct {
				Name, Type string
				Query      any
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Datasource struct{ Type, UID string } `json:"datasource"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(d.Templating.List, func(v struct {
		Name, Type string
		Query      any
	}) bool {
		return v.Name == "datasource" && v.Type == "datasource" && v.Query == "prometheus"
	}) {
		t.Error("no Prometheus data source variable named datasource")
	}
	for _, p := range d.Panels {
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if tg.Datasource.Type != "prometheus" || !strings.Contains(tg.Datasource.UID, "${datasource}") {
				t.Errorf("panel %q: data source %+v, want the ${datasource} variable", p.Title, tg.Datasource)
			}
		}
	}
}
