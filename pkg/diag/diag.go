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

// ExitCode is the status as a Nagios plugin exit code: 0 OK (pass or
// skip), 1 WARNING, 2 CRITICAL (fail), 3 UNKNOWN. A report whose every
// check was skipped has status unknown, not skip.
func (s Status) ExitCode() int {
	switch s {
	case StatusWarn:
		return 1
	case StatusFail:
		return 2
	case StatusUnknown:
		return 3
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
	// Run probes the host. It must honour ctx: ctx ends a little before
	// the timeout, so that an unknown Run returns then, with its own hint,
	// is what the report shows; at the timeout the check is recorded as
	// unknown and whatever Run returns later is dropped.
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
	// Status is the worst status of all checks; unknown when every
	// check was skipped, since nothing was checked.
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

// Catalog is every check name diag knows, in display order. Names are
// stable: runbooks, alerts and --only/--skip refer to them.
var Catalog = []string{
	"net.bridges", "net.uplink", "net.offloads", "net.forwarding", "net.flows", "net.bridge_mac",
	"storage.mounts", "storage.device_errors", "storage.free",
	"snapshots.loop", "snapshots.count", "snapshots.orphans",
	"chain.verify", "chain.head_age",
	"vector.reachable", "vector.collection", "vector.lag",
	"vm.libvirt", "vm.nics",
	"services.units", "services.dbus_names",
	"security.sshd", "security.listeners",
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
// Run is a Runner's single run; --watch keeps one Runner across runs.
func Run(ctx context.Context, checks []Check, opts Options) Report {
	return NewRunner(opts).Run(ctx, checks)
}

// Runner runs checks again and again (diag --watch) and remembers, across
// runs, each check whose Run has not returned yet. A check that ignores
// its context keeps its goroutine after its run's timeout; the next run
// reports it as hung instead of starting another copy, so a wedged
// subsystem costs one goroutine, not one per run.
type Runner struct {
	opts Options
	mu   sync.Mutex
	// inflight maps a check's name to when its running copy started.
	inflight map[string]time.Time
}

// NewRunner returns a Runner with opts.
func NewRunner(opts Options) *Runner {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Runner{opts: opts, inflight: map[string]time.Time{}}
}

// Running lists the checks whose Run has not returned, by name.
func (rn *Runner) Running() []string {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	var out []string
	for n := range rn.inflight {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// start records that c starts now, or reports when a copy of it still
// running started.
func (rn *Runner) start(name string, now time.Time) (since time.Time, running bool) {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	if since, ok := rn.inflight[name]; ok {
		return since, true
	}
	rn.inflight[name] = now
	return now, false
}

func (rn *Runner) finished(name string) {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	delete(rn.inflight, name)
}

// Run runs the checks once; see the package function Run.
func (rn *Runner) Run(ctx context.Context, checks []Check) Report {
	now := rn.opts.Now
	start := now()
	// The checks of one run share what they read (the chain database),
	// opened once and closed when the run is over and every check that
	// used it has returned.
	scope := &chainScope{}
	ctx = context.WithValue(ctx, chainScopeKey{}, scope)
	defer scope.end()
	results := make([]Result, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		results[i] = Result{Name: c.Name, Group: c.Group()}
		if c.SkipReason != "" || c.Run == nil {
			results[i].Status = StatusSkip
			results[i].Detail = c.SkipReason
			continue
		}
		if since, running := rn.start(c.Name, now()); running {
			o := Unknown(fmt.Sprintf("the %s subsystem has not answered since then and the check does not give up; check its service, then restart diag", c.Group()),
				"still running since %s (hung): not started again", since.UTC().Format(time.RFC3339))
			results[i].Status, results[i].Detail, results[i].Hint = o.Status, o.Detail, o.Hint
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := now()
			o := rn.runOne(ctx, c)
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
	// Nothing checked is not healthy: a probe whose every check is
	// skipped (a config without the tables, --only on an absent group)
	// must not report OK.
	if len(results) > 0 && r.Counts.Skip == len(results) {
		r.Status = StatusUnknown
	}
	r.Wall = now().Sub(start)
	r.Verdict = verdict(r)
	return r
}

// checkSlack is how much sooner than the hard cutoff a check's own
// context ends, at most: time for a check that honours ctx to return its
// own unknown, with a hint naming what it waited for, before the generic
// one replaces it.
const checkSlack = 100 * time.Millisecond

// runOne runs c with its own deadline, a little before the timeout, and
// cuts it off at the timeout. The check runs in its own goroutine so that
// one ignoring ctx still cannot hold up the report; rn remembers it until
// it returns.
func (rn *Runner) runOne(ctx context.Context, c Check) Outcome {
	timeout := rn.opts.Timeout
	hard, cancelHard := context.WithTimeout(ctx, timeout)
	defer cancelHard()
	cctx, cancel := context.WithTimeout(hard, timeout-min(timeout/10, checkSlack))
	defer cancel()
	done := make(chan Outcome, 1)
	go func() {
		defer rn.finished(c.Name)
		defer func() {
			if p := recover(); p != nil {
				done <- Unknown("report this as a bug with `ghostbridge diag --format json`",
					"check panicked: %v (%s)", p, firstFrame(debug.Stack()))
			}
		}()
		done <- c.Run(cctx)
	}()
	timedOut := func() Outcome {
		return Unknown(fmt.Sprintf("the %s subsystem did not answer; check its service, or raise diag.timeout", c.Group()),
			"no answer within %s", timeout)
	}
	select {
	case o := <-done:
		if o.Status == "" {
			o.Status = StatusUnknown
		}
		if o.Status == StatusUnknown && errors.Is(cctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
			d := timedOut()
			if o.Detail == "" {
				o.Detail = d.Detail
			}
			if o.Hint == "" {
				o.Hint = d.Hint
			}
		}
		return o
	case <-hard.Done():
		if ctx.Err() != nil {
			return Unknown("diag was interrupted (Ctrl-C or SIGTERM) before this check finished; run diag again",
				"interrupted: %v", ctx.Err())
		}
		return timedOut()
	}
}

// verdict is the one-line summary printed at the end.
func verdict(r Report) string {
	n := len(r.Checks) - r.Counts.Skip
	if len(r.Checks) > 0 && r.Counts.Skip == len(r.Checks) {
		return fmt.Sprintf("UNKNOWN: every selected check was skipped (%s)", skipReasons(r))
	}
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

// skipReasons lists the distinct reasons checks were skipped for.
func skipReasons(r Report) string {
	var reasons []string
	for _, res := range r.Checks {
		if res.Detail != "" && !slices.Contains(reasons, res.Detail) {
			reasons = append(reasons, res.Detail)
		}
	}
	return strings.Join(reasons, "; ")
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
