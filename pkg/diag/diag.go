// Package diag answers "is this host healthy, and why not": named checks,
// grouped by subsystem, run concurrently with a timeout each, every result
// carrying a one-line detail and, when it is not passing, a remediation hint.
//
// diag is read-only: no check may change the host. The package never
// prints and never reads flags or config; the CLI builds the checks from
// the config and renders the Report.
package diag

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"
)

// SchemaVersion is the version of the Report's JSON form. It changes only
// when a field is removed or changes meaning.
const SchemaVersion = 1

// DefaultTimeout bounds each check when Options.Timeout is zero.
const DefaultTimeout = 2 * time.Second

// Status is a check's verdict.
type Status string

// The statuses, from best to worst for the overall verdict: skip and pass
// are healthy, warn needs attention, unknown means a check could not tell,
// fail means something is broken.
const (
	StatusSkip    Status = "skip"
	StatusPass    Status = "pass"
	StatusWarn    Status = "warn"
	StatusUnknown Status = "unknown"
	StatusFail    Status = "fail"
)

// rank orders statuses for the overall verdict.
func (s Status) rank() int {
	switch s {
	case StatusPass:
		return 1
	case StatusWarn:
		return 2
	case StatusUnknown:
		return 3
	case StatusFail:
		return 4
	}
	return 0
}

// Worse reports whether s is a worse verdict than t.
func (s Status) Worse(t Status) bool { return s.rank() > t.rank() }

// Outcome is what a check's Run returns.
type Outcome struct {
	Status Status
	// Detail is one line saying what was found.
	Detail string
	// Hint is the command to run or the config key to change; required
	// for anything that is not pass or skip.
	Hint string
}

// Pass is a passing outcome.
func Pass(format string, args ...any) Outcome {
	return Outcome{Status: StatusPass, Detail: fmt.Sprintf(format, args...)}
}

// Warn is a warning with a remediation hint.
func Warn(hint, format string, args ...any) Outcome {
	return Outcome{Status: StatusWarn, Detail: fmt.Sprintf(format, args...), Hint: hint}
}

// Fail is a failure with a remediation hint.
func Fail(hint, format string, args ...any) Outcome {
	return Outcome{Status: StatusFail, Detail: fmt.Sprintf(format, args...), Hint: hint}
}

// Unknown says the check could not tell, with a hint on how to find out.
func Unknown(hint, format string, args ...any) Outcome {
	return Outcome{Status: StatusUnknown, Detail: fmt.Sprintf(format, args...), Hint: hint}
}

// Check is one named probe.
type Check struct {
	// Name is stable and dotted, group first: "net.bridges".
	Name string
	// SkipReason, when set, says why the check does not apply (its
	// subsystem is absent from the config); Run is then not called.
	SkipReason string
	// Run probes the host. It must honour ctx: when ctx ends the check's
	// result is already recorded as unknown and whatever Run returns later
	// is dropped.
	Run func(ctx context.Context) Outcome
}

// Group is the part of the name before the first dot.
func (c Check) Group() string {
	g, _, _ := strings.Cut(c.Name, ".")
	return g
}

// Skipped is a check that does not apply, with the reason.
func Skipped(name, reason string) Check {
	return Check{Name: name, SkipReason: reason}
}

// Result is one check's row in the Report.
type Result struct {
	Name     string        `json:"name"`
	Group    string        `json:"group"`
	Status   Status        `json:"status"`
	Detail   string        `json:"detail"`
	Hint     string        `json:"hint,omitempty"`
	Duration time.Duration `json:"duration_ns"`
}

// Report is the outcome of one diag run. Its JSON form is a documented
// contract (see SchemaVersion).
type Report struct {
	Schema int       `json:"schema"`
	Time   time.Time `json:"time"`
	// Status is the worst status of all checks (pass when all skipped).
	Status  Status   `json:"status"`
	Verdict string   `json:"verdict"`
	Counts  Counts   `json:"counts"`
	Checks  []Result `json:"checks"`
	// Wall is how long the run took; Sum is the checks' durations added
	// up. Wall near the slowest check, not Sum, shows they ran at once.
	Wall time.Duration `json:"wall_ns"`
	Sum  time.Duration `json:"sum_ns"`
}

// Counts is how many checks ended in each status.
type Counts struct {
	Pass    int `json:"pass"`
	Warn    int `json:"warn"`
	Fail    int `json:"fail"`
	Unknown int `json:"unknown"`
	Skip    int `json:"skip"`
}

// Options tunes Run.
type Options struct {
	// Timeout bounds each check; zero means DefaultTimeout.
	Timeout time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// ErrUnknownCheck is returned by Select for a name or group that no check has.
var ErrUnknownCheck = errors.New("unknown check")

// Select keeps the checks named by only (all when empty) and drops those
// named by skip. Names match a whole check name or a group. A name that
// matches nothing is an error listing what exists, so a typo in a runbook
// does not silently check nothing.
func Select(checks []Check, only, skip []string) ([]Check, error) {
	matches := func(c Check, sel string) bool { return c.Name == sel || c.Group() == sel }
	for _, sel := range slices.Concat(only, skip) {
		if !slices.ContainsFunc(checks, func(c Check) bool { return matches(c, sel) }) {
			return nil, fmt.Errorf("%w %q; known: %s", ErrUnknownCheck, sel, strings.Join(Names(checks), ", "))
		}
	}
	var out []Check
	for _, c := range checks {
		if len(only) > 0 && !slices.ContainsFunc(only, func(s string) bool { return matches(c, s) }) {
			continue
		}
		if slices.ContainsFunc(skip, func(s string) bool { return matches(c, s) }) {
			continue
		}
		out = append(out, c)
	}
	return out, nil
}

// Names lists the groups and check names, sorted, for errors and completion.
func Names(checks []Check) []string {
	var names []string
	for _, c := range checks {
		names = append(names, c.Group(), c.Name)
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// Run runs every check at once, each bounded by the timeout, and returns
// the Report with results in the order of checks. A check that overruns
// is unknown; a check that panics is unknown with the panic as detail.
func Run(ctx context.Context, checks []Check, opts Options) Report {
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	start := now()
	results := make([]Result, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		results[i] = Result{Name: c.Name, Group: c.Group()}
		if c.SkipReason != "" || c.Run == nil {
			results[i].Status = StatusSkip
			results[i].Detail = c.SkipReason
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := now()
			o := runOne(ctx, c, timeout)
			results[i].Status, results[i].Detail, results[i].Hint = o.Status, oneLine(o.Detail), oneLine(o.Hint)
			results[i].Duration = now().Sub(t0)
		}()
	}
	wg.Wait()
	r := Report{Schema: SchemaVersion, Time: start.UTC(), Status: StatusPass, Checks: results}
	for _, res := range results {
		r.Sum += res.Duration
		if res.Status.Worse(r.Status) {
			r.Status = res.Status
		}
		switch res.Status {
		case StatusPass:
			r.Counts.Pass++
		case StatusWarn:
			r.Counts.Warn++
		case StatusFail:
			r.Counts.Fail++
		case StatusUnknown:
			r.Counts.Unknown++
		default:
			r.Counts.Skip++
		}
	}
	r.Wall = now().Sub(start)
	r.Verdict = verdict(r)
	return r
}

// runOne runs c with its own deadline. The check runs in its own
// goroutine so that one ignoring ctx still cannot hold up the report.
func runOne(ctx context.Context, c Check, timeout time.Duration) Outcome {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	done := make(chan Outcome, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- Unknown("report this as a bug with `ghostbridge diag --format json`",
					"check panicked: %v (%s)", p, firstFrame(debug.Stack()))
			}
		}()
		done <- c.Run(ctx)
	}()
	select {
	case o := <-done:
		if o.Status == "" {
			o.Status = StatusUnknown
		}
		if o.Status == StatusUnknown && errors.Is(ctx.Err(), context.DeadlineExceeded) && o.Detail == "" {
			o.Detail = fmt.Sprintf("no answer within %s", timeout)
		}
		return o
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return Unknown(fmt.Sprintf("the %s subsystem did not answer; check its service, or raise diag.timeout", c.Group()),
				"no answer within %s", timeout)
		}
		return Unknown("", "interrupted: %v", ctx.Err())
	}
}

// verdict is the one-line summary printed at the end.
func verdict(r Report) string {
	n := len(r.Checks) - r.Counts.Skip
	switch r.Status {
	case StatusPass:
		return fmt.Sprintf("OK: %d checks pass, %d skipped", n, r.Counts.Skip)
	case StatusWarn:
		return fmt.Sprintf("WARNING: %d of %d checks warn (%s)", r.Counts.Warn, n, worstNames(r, StatusWarn))
	case StatusUnknown:
		return fmt.Sprintf("UNKNOWN: %d of %d checks could not tell (%s)", r.Counts.Unknown, n, worstNames(r, StatusUnknown))
	default:
		return fmt.Sprintf("CRITICAL: %d of %d checks fail (%s)", r.Counts.Fail, n, worstNames(r, StatusFail))
	}
}

func worstNames(r Report, s Status) string {
	var names []string
	for _, res := range r.Checks {
		if res.Status == s {
			names = append(names, res.Name)
		}
	}
	return strings.Join(names, ", ")
}

// oneLine folds whitespace so a detail never breaks the one-line form.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// firstFrame picks the panicking function out of a stack trace.
func firstFrame(stack []byte) string {
	lines := strings.Split(string(stack), "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "panic(") && i+2 < len(lines) {
			return strings.TrimSpace(lines[i+2])
		}
	}
	return "stack unavailable"
}
