package snap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ghostbridge/ghostbridge/pkg/chain"
	"github.com/ghostbridge/ghostbridge/pkg/sys/btrfs"
)

func TestSchedule(t *testing.T) {
	iv := time.Second
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	tests := []struct {
		name       string
		now, prev  time.Time
		iv         time.Duration
		want       time.Time
		wantMissed *chain.TicksMissedPayload
	}{
		{"first tick: next boundary", at(0.3), time.Time{}, iv, at(1), nil},
		{"first tick on a boundary waits a whole interval", at(0), time.Time{}, iv, at(1), nil},
		{"tick done in time", at(1.004), at(1), iv, at(2), nil},
		{"tick ended just before the boundary", at(1.999999999), at(1), iv, at(2), nil},
		{"overran by a bit: one missed", at(2.001), at(1), iv, at(3), &chain.TicksMissedPayload{Count: 1, From: at(2), To: at(2)}},
		{"overran 2.5 intervals", at(6.5), at(4), iv, at(7), &chain.TicksMissedPayload{Count: 2, From: at(5), To: at(6)}},
		{"clock stepped back", at(0.5), at(5), iv, at(1), nil},
		{"sub-second interval", at(0.123), at(0.1), 50 * time.Millisecond, at(0.15), &chain.TicksMissedPayload{Count: 0}},
		{"10ms interval overrun", at(0.1234), at(0.1), 10 * time.Millisecond, at(0.13), &chain.TicksMissedPayload{Count: 2, From: at(0.11), To: at(0.12)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next, missed := schedule(tt.now, tt.prev, tt.iv)
			if !next.Equal(tt.want) {
				t.Errorf("next = %v, want %v", next, tt.want)
			}
			want := tt.wantMissed
			if want != nil && want.Count == 0 {
				want = nil
			}
			if (missed == nil) != (want == nil) || (missed != nil && (missed.Count != want.Count || !missed.From.Equal(want.From) || !missed.To.Equal(want.To))) {
				t.Errorf("missed = %+v, want %+v", missed, want)
			}
		})
	}
}

// memFS is an in-memory Snapshotter for the scheduling tests only: it lets
// synctest's fake clock stand in for slow snapshots. Every filesystem
// behaviour is tested against real BTRFS elsewhere.
type memFS struct {
	mu      sync.Mutex
	subs    map[string]btrfs.Info
	n       int
	calls   int
	onSnap  func(call int) error // may sleep (fake time) or fail
	deleted []string
}

func newMemFS(sources ...string) *memFS {
	m := &memFS{subs: map[string]btrfs.Info{}}
	for _, s := range sources {
		m.subs[s] = btrfs.Info{UUID: "uuid-" + filepath.Base(s)}
	}
	return m
}

func (m *memFS) IsSubvolume(path string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.subs[path]
	return ok, nil
}

func (m *memFS) SameFilesystem(a, b string) (bool, error) { return true, nil }

func (m *memFS) Snapshot(src, dst string, readOnly bool) error {
	m.mu.Lock()
	m.calls++
	call := m.calls
	m.mu.Unlock()
	if m.onSnap != nil {
		if err := m.onSnap(call); err != nil {
			return err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.subs[dst]; ok {
		return &btrfs.Error{Op: "snapshot", Path: dst, Source: src, Err: btrfs.ErrExists}
	}
	m.n++
	m.subs[dst] = btrfs.Info{UUID: fmt.Sprintf("snap-%d", m.n), ParentUUID: m.subs[src].UUID, Generation: uint64(m.n), OTime: time.Now().UTC(), ReadOnly: readOnly}
	return nil
}

func (m *memFS) Delete(path string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.subs[path]; !ok {
		return &btrfs.Error{Op: "delete", Path: path, Err: os.ErrNotExist}
	}
	delete(m.subs, path)
	m.deleted = append(m.deleted, path)
	return nil
}

func (m *memFS) Info(path string) (btrfs.Info, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	i, ok := m.subs[path]
	if !ok {
		return btrfs.Info{}, &btrfs.Error{Op: "info", Path: path, Err: os.ErrNotExist}
	}
	return i, nil
}

type recNotifier struct {
	mu     sync.Mutex
	states []string
	at     []time.Time // when each state was sent (the bubble's clock)
}

func (n *recNotifier) Notify(s string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.states = append(n.states, s)
	n.at = append(n.at, time.Now())
	return nil
}

// loopEnv runs Run inside a synctest bubble with a real SQLite chain.
type loopEnv struct {
	fs    *memFS
	store *chain.Store
	note  *recNotifier
	cfg   Config
	ticks []TickResult
}

func newLoopEnv(t *testing.T, iv time.Duration, keep time.Duration) *loopEnv {
	t.Helper()
	store, err := chain.Open(t.Context(), filepath.Join(t.TempDir(), "chain.db"), chain.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	src := "/fake/src"
	return &loopEnv{
		fs:    newMemFS(src),
		store: store,
		note:  &recNotifier{},
		cfg:   Config{Sources: []Source{{Name: "src", Path: src}}, Dir: t.TempDir(), Interval: iv, Policy: Policy{Keep: keep}},
	}
}

// run runs the loop until stop says so (checked after each tick).
func (e *loopEnv) run(t *testing.T, stop func(ticks []TickResult) bool) error {
	return e.runDeps(t, Deps{Chain: e.store, FS: e.fs, Notifier: e.note}, stop)
}

func (e *loopEnv) runDeps(t *testing.T, d Deps, stop func(ticks []TickResult) bool) error {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	return Run(ctx, d, e.cfg, RunOptions{OnTick: func(r TickResult) {
		e.ticks = append(e.ticks, r)
		if stop(e.ticks) {
			cancel()
		}
	}})
}

func TestLoopAlignedNoDrift(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// 1000 ticks of 10 s: almost three hours of fake time.
		const iv, n = 10 * time.Second, 1000
		e := newLoopEnv(t, iv, 5*iv)
		// Each snapshot takes a while: the schedule must not accumulate it.
		e.fs.onSnap = func(int) error { time.Sleep(3170 * time.Millisecond); return nil }
		start := time.Now()
		if err := e.run(t, func(ticks []TickResult) bool { return len(ticks) == n }); err != nil {
			t.Fatal(err)
		}
		first := start.Truncate(iv).Add(iv)
		for i, r := range e.ticks {
			if want := first.Add(time.Duration(i) * iv); !r.Time.Equal(want) {
				t.Fatalf("tick %d at %v, want %v (drift %v)", i, r.Time, want, r.Time.Sub(want))
			}
			if r.Missed != 0 || r.Err != nil || len(r.Created) != 1 {
				t.Fatalf("tick %d: %+v", i, r)
			}
			if r.Duration < 3170*time.Millisecond {
				t.Fatalf("tick %d: duration %v, want the snapshot's 3.17s", i, r.Duration)
			}
		}
		// Retention keeps 5 intervals: 5 live at every tick.
		live, err := e.store.Live(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if len(live) != 5 {
			t.Errorf("live = %d, want 5", len(live))
		}
		if got := len(e.fs.deleted); got != n-5 {
			t.Errorf("deleted %d, want %d", got, n-5)
		}
	})
}

func TestLoopOverrunSkipsAndRecordsMissed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newLoopEnv(t, time.Second, time.Minute)
		e.fs.onSnap = func(call int) error {
			if call == 4 {
				time.Sleep(2500 * time.Millisecond)
			}
			return nil
		}
		if err := e.run(t, func(ticks []TickResult) bool { return len(ticks) == 6 }); err != nil {
			t.Fatal(err)
		}
		base := e.ticks[0].Time
		var gotAt []time.Duration
		var gotMissed []uint64
		for _, r := range e.ticks {
			gotAt = append(gotAt, r.Time.Sub(base))
			gotMissed = append(gotMissed, r.Missed)
		}
		s := time.Second
		if want := []time.Duration{0, s, 2 * s, 3 * s, 6 * s, 7 * s}; !slices.Equal(gotAt, want) {
			t.Errorf("tick times %v, want %v", gotAt, want)
		}
		if want := []uint64{0, 0, 0, 0, 2, 0}; !slices.Equal(gotMissed, want) {
			t.Errorf("missed %v, want %v", gotMissed, want)
		}
		missed, err := e.store.Blocks(t.Context(), chain.Query{Kinds: []chain.Kind{chain.KindTicksMissed}})
		if err != nil {
			t.Fatal(err)
		}
		if len(missed) != 1 {
			t.Fatalf("%d ticks.missed blocks, want 1", len(missed))
		}
		var p chain.TicksMissedPayload
		if err := json.Unmarshal(missed[0].Payload, &p); err != nil {
			t.Fatal(err)
		}
		if p.Count != 2 || !p.From.Equal(base.Add(4*s)) || !p.To.Equal(base.Add(5*s)) {
			t.Errorf("ticks.missed payload %+v, want 2 from %v to %v", p, base.Add(4*s), base.Add(5*s))
		}
		// The missed block is in the same transaction as the next tick's
		// snapshot, right before it.
		next, err := e.store.Get(t.Context(), missed[0].Height+1)
		if err != nil || next.Kind != chain.KindSnapshotCreated || next.Height != e.ticks[4].Created[0].Height {
			t.Errorf("block after ticks.missed: %+v, %v", next, err)
		}
		if res, err := e.store.Verify(t.Context(), chain.VerifyOptions{}); err != nil || !res.OK {
			t.Errorf("verify: %+v, %v", res, err)
		}
	})
}

func TestLoopNotifications(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newLoopEnv(t, time.Second, time.Minute)
		// The first two ticks fail: no READY until one succeeds, and no
		// keep-alive for a failed tick.
		e.fs.onSnap = func(call int) error {
			if call == 1 || call == 2 || call == 4 {
				return errors.New("disk on fire")
			}
			return nil
		}
		if err := e.run(t, func(ticks []TickResult) bool { return len(ticks) == 5 }); err != nil {
			t.Fatal(err)
		}
		want := []string{NotifyReady, NotifyWatchdog, NotifyWatchdog, NotifyStopping}
		if !slices.Equal(e.note.states, want) {
			t.Errorf("notifications %q, want %q", e.note.states, want)
		}
		for i, r := range e.ticks {
			if failed := i == 0 || i == 1 || i == 3; failed != (r.Err != nil) {
				t.Errorf("tick %d: err %v", i, r.Err)
			}
		}
	})
}

// Cancelling while a tick is in hand finishes and records that tick, then
// Run returns nil.
func TestLoopCancelFinishesTick(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newLoopEnv(t, time.Second, time.Minute)
		ctx, cancel := context.WithCancel(t.Context())
		e.fs.onSnap = func(call int) error {
			if call == 3 {
				cancel() // SIGTERM arrives mid-tick
				time.Sleep(200 * time.Millisecond)
			}
			return nil
		}
		d := Deps{Chain: e.store, FS: e.fs, Notifier: e.note}
		err := Run(ctx, d, e.cfg, RunOptions{OnTick: func(r TickResult) { e.ticks = append(e.ticks, r) }})
		if err != nil {
			t.Fatalf("Run after cancel = %v, want nil", err)
		}
		if len(e.ticks) != 3 || len(e.ticks[2].Created) != 1 {
			t.Fatalf("ticks %d (last %+v), want 3 with the last one recorded", len(e.ticks), e.ticks[len(e.ticks)-1])
		}
		head, err := e.store.Head(t.Context())
		if err != nil || head.Height != e.ticks[2].Created[0].Height {
			t.Errorf("head %d, %v; want the cancelled tick's block %d", head.Height, err, e.ticks[2].Created[0].Height)
		}
		if e.note.states[len(e.note.states)-1] != NotifyStopping {
			t.Errorf("last notification %q, want STOPPING=1", e.note.states)
		}
	})
}

// A wall clock stepped back an hour, during the sleep or between ticks,
// neither stalls the loop nor fails it: it keeps snapshotting within a
// couple of intervals, and names already taken are skipped.
func TestLoopClockSteppedBack(t *testing.T) {
	for _, during := range []bool{true, false} {
		name := map[bool]string{true: "during the sleep", false: "between ticks"}[during]
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newLoopEnv(t, time.Second, 2*time.Hour)
				var mu sync.Mutex
				var offset time.Duration
				now := func() time.Time { mu.Lock(); defer mu.Unlock(); return time.Now().Add(offset) }
				step := func(d time.Duration) { mu.Lock(); offset += d; mu.Unlock() }
				var real []time.Time // the bubble's unstepped clock at each tick
				d := Deps{Chain: e.store, FS: e.fs, Notifier: e.note, Now: now}
				err := e.runDeps(t, d, func(ticks []TickResult) bool {
					real = append(real, time.Now())
					if len(ticks) == 3 {
						if during {
							go func() { time.Sleep(300 * time.Millisecond); step(-time.Hour) }()
						} else {
							step(-time.Hour)
						}
					}
					return len(ticks) == 8
				})
				if err != nil {
					t.Fatal(err)
				}
				for i := 3; i < len(real); i++ {
					if gap := real[i].Sub(real[i-1]); gap > 2*time.Second {
						t.Errorf("tick %d came %v after the previous one: the loop stalled", i, gap)
					}
				}
				for i, r := range e.ticks {
					if r.Err != nil {
						t.Errorf("tick %d: %v", i, r.Err)
					}
				}
				if got := e.ticks[3].Time.Sub(e.ticks[2].Time); got > -59*time.Minute {
					t.Errorf("tick after the step at %v, %v after the one before; want about an hour back", e.ticks[3].Time, got)
				}
				created := 0
				for _, r := range e.ticks[3:] {
					created += len(r.Created)
				}
				if created < 4 {
					t.Errorf("%d snapshots in the 5 ticks after the step, want at least 4", created)
				}
			})
		})
	}
	// Stepping back by less than the ticks already taken replays names:
	// those ticks skip the source and stay healthy.
	t.Run("names replayed", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			e := newLoopEnv(t, time.Second, time.Hour)
			var mu sync.Mutex
			var offset time.Duration
			now := func() time.Time { mu.Lock(); defer mu.Unlock(); return time.Now().Add(offset) }
			d := Deps{Chain: e.store, FS: e.fs, Notifier: e.note, Now: now}
			err := e.runDeps(t, d, func(ticks []TickResult) bool {
				if len(ticks) == 4 {
					mu.Lock()
					offset -= 3 * time.Second
					mu.Unlock()
				}
				return len(ticks) == 9
			})
			if err != nil {
				t.Fatal(err)
			}
			var skipped int
			for i, r := range e.ticks {
				if r.Err != nil {
					t.Errorf("tick %d: %v", i, r.Err)
				}
				if len(r.Created) == 0 {
					skipped++
				}
			}
			if skipped == 0 {
				t.Error("no tick skipped a taken name")
			}
			if n := len(e.note.states); n < 9 || e.note.states[n-2] != NotifyWatchdog {
				t.Errorf("notifications %q: want a keep-alive for every tick, skipped names included", e.note.states)
			}
		})
	})
}

// With an interval longer than the watchdog timeout, a healthy loop still
// sends WATCHDOG=1 at least every half timeout; an unhealthy one does not.
func TestLoopWatchdogWhileSleeping(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const iv, wd = 10 * time.Second, 3 * time.Second
		e := newLoopEnv(t, iv, time.Hour)
		e.fs.onSnap = func(call int) error {
			if call == 3 {
				return errors.New("disk on fire")
			}
			return nil
		}
		d := Deps{Chain: e.store, FS: e.fs, Notifier: e.note, WatchdogInterval: wd}
		var tickAt []time.Time
		err := e.runDeps(t, d, func(ticks []TickResult) bool {
			tickAt = append(tickAt, time.Now())
			return len(ticks) == 5
		})
		if err != nil {
			t.Fatal(err)
		}
		var pings []time.Time
		for i, s := range e.note.states {
			if s == NotifyWatchdog {
				pings = append(pings, e.note.at[i])
			}
		}
		if len(pings) == 0 {
			t.Fatal("no WATCHDOG=1 sent")
		}
		// No ping between the failed third tick and the fourth.
		for _, p := range pings {
			if p.After(tickAt[2]) && p.Before(tickAt[3]) {
				t.Errorf("WATCHDOG=1 at %v, after the failed tick at %v", p, tickAt[2])
			}
		}
		// Between healthy ticks, never more than wd/2 without one.
		check := func(from, to time.Time) {
			last := from
			for _, p := range pings {
				if p.After(from) && !p.After(to) {
					if p.Sub(last) > wd/2 {
						t.Errorf("%v without WATCHDOG=1 before %v", p.Sub(last), p)
					}
					last = p
				}
			}
			if to.Sub(last) > wd/2 {
				t.Errorf("%v without WATCHDOG=1 before the tick at %v", to.Sub(last), to)
			}
		}
		check(tickAt[0], tickAt[1])
		check(tickAt[1], tickAt[2])
		check(tickAt[3], tickAt[4])
	})
}
