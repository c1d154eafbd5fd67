package diag

import (
	"fmt"
	"io"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// Statuses lists every status, for one-hot series and documentation.
var Statuses = []Status{StatusPass, StatusWarn, StatusFail, StatusUnknown, StatusSkip}

// Registry returns a private registry holding r as gauges:
//
//	ghostbridge_diag_check_status{check,group,status}   1 for the check's status, 0 for the others
//	ghostbridge_diag_check_duration_seconds{check,group}
//	ghostbridge_diag_last_run_timestamp_seconds
//	ghostbridge_diag_run_duration_seconds               the run's wall time
//	ghostbridge_diag_status                             the exit code (0 ok, 1 warn, 2 fail, 3 unknown)
//
// Every status of every check is present, so an alert on status="fail"
// sees 0 rather than a missing series when the check passes.
func Registry(r Report) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	status := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "ghostbridge_diag_check_status",
		Help: "Result of each diag check: 1 for its status, 0 for the other statuses.",
	}, []string{"check", "group", "status"})
	duration := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "ghostbridge_diag_check_duration_seconds",
		Help: "How long each diag check took in the last run.",
	}, []string{"check", "group"})
	last := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "ghostbridge_diag_last_run_timestamp_seconds",
		Help: "When the last diag run started, in seconds since the Unix epoch.",
	})
	wall := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "ghostbridge_diag_run_duration_seconds",
		Help: "Wall time of the last diag run; the checks run concurrently.",
	})
	overall := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "ghostbridge_diag_status",
		Help: "Overall diag result as a Nagios code: 0 ok, 1 warning, 2 critical, 3 unknown.",
	})
	reg.MustRegister(status, duration, last, wall, overall)
	for _, c := range r.Checks {
		for _, s := range Statuses {
			v := 0.0
			if c.Status == s {
				v = 1
			}
			status.WithLabelValues(c.Name, c.Group, string(s)).Set(v)
		}
		duration.WithLabelValues(c.Name, c.Group).Set(c.Duration.Seconds())
	}
	last.Set(float64(r.Time.UnixNano()) / 1e9)
	wall.Set(r.Wall.Seconds())
	overall.Set(float64(r.Status.ExitCode()))
	return reg
}

// WritePrometheus writes r to w in the Prometheus text exposition format.
func WritePrometheus(w io.Writer, r Report) error {
	mfs, err := Registry(r).Gather()
	if err != nil {
		return fmt.Errorf("gather diag metrics: %w", err)
	}
	enc := expfmt.NewEncoder(w, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return fmt.Errorf("encode diag metrics: %w", err)
		}
	}
	return nil
}

// WriteTextfile writes r in the text format to path for node exporter's
// textfile collector: a temporary file in the same directory renamed over
// path, so the collector never reads half a file. The name should end in
// ".prom".
func WriteTextfile(path string, r Report) error {
	if err := prometheus.WriteToTextfile(path, Registry(r)); err != nil {
		return fmt.Errorf("textfile %s: %w", path, err)
	}
	return nil
}
