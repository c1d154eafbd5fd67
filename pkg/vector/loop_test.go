package vector

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ghostbridge/ghostbridge/pkg/vector/qdranttest"
)

// timedNotes records notifications with the (bubble) time they came.
type timedNotes struct {
	mu    sync.Mutex
	at    []time.Time
	state []string
}

func (n *timedNotes) Notify(s string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.at = append(n.at, time.Now())
	n.state = append(n.state, s)
	return nil
}

func (n *timedNotes) times(state string) []time.Time {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []time.Time
	for i, s := range n.state {
		if s == state {
			out = append(out, n.at[i])
		}
	}
	return out
}

// TestBackoffShape: retry n waits within [w/2, w] for w = min(30s,
// 100ms·2^n), so waits grow exponentially with jitter and stop growing
// at the 30 s cap.
func TestBackoffShape(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSyncer(Deps{}, Config{Collection: "c"})
		var at []time.Time
		const attempts = 16
		err := s.call(t.Context(), "upsert", func(context.Context) error {
			at = append(at, time.Now())
			if len(at) < attempts {
				return status.Error(codes.Unavailable, "down")
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		capped := 0
		for i := 1; i < len(at); i++ {
			gap := at[i].Sub(at[i-1])
			w := min(30*time.Second, 100*time.Millisecond<<(i-1))
			if gap < w/2 || gap > w {
				t.Errorf("wait %d = %s, want within [%s, %s]", i-1, gap, w/2, w)
			}
			if w == 30*time.Second {
				capped++
			}
		}
		if capped < 3 {
			t.Fatalf("only %d waits at the cap", capped)
		}
		if s.retries != attempts-1 {
			t.Fatalf("retries %d", s.retries)
		}
	})
}

// TestRetryAfterHonoured: ResourceExhausted with Qdrant's retry-after (the
// client's QdrantResourceExhaustedError) waits at least that long.
func TestRetryAfterHonoured(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSyncer(Deps{}, Config{Collection: "c"})
		var at []time.Time
		err := s.call(t.Context(), "upsert", func(context.Context) error {
			at = append(at, time.Now())
			if len(at) == 1 {
				return fmt.Errorf("Upsert() failed: %w", &qdrant.QdrantResourceExhaustedError{Reason: "rate limit", RetryAfterS: 7})
			}
			return nil
		})
		if err != nil || len(at) != 2 {
			t.Fatalf("%v after %d attempts", err, len(at))
		}
		if gap := at[1].Sub(at[0]); gap < 7*time.Second || gap > 8*time.Second {
			t.Fatalf("waited %s, want the 7 s Qdrant asked for", gap)
		}
	})
}

// TestWatchdogDuringOutage: while calls keep failing and the loop sleeps
// in backoff, WATCHDOG=1 comes at least every half watchdog interval.
func TestWatchdogDuringOutage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := &timedNotes{}
		const wd = 10 * time.Second
		s := newSyncer(Deps{Notifier: n, WatchdogInterval: wd}, Config{Collection: "c"})
		start := time.Now()
		s.alive(chainSlack)
		stop := s.watchdog()
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
		defer cancel()
		err := s.call(ctx, "upsert", func(context.Context) error { return status.Error(codes.Unavailable, "down") })
		stop()
		if err == nil {
			t.Fatal("call succeeded against a dead Qdrant")
		}
		pings := n.times(NotifyWatchdog)
		if len(pings) < 59 {
			t.Fatalf("%d pings in 5 minutes, want one every 5 s", len(pings))
		}
		last := start
		for _, p := range pings {
			if p.Sub(last) > wd/2 {
				t.Fatalf("gap of %s between pings (watchdog %s)", p.Sub(last), wd)
			}
			last = p
		}
	})
}

// TestWatchdogStopsWhenWedged: a call that never returns (ignoring its
// deadline) stops the pings once its bound has passed, so the service
// manager restarts the process.
func TestWatchdogStopsWhenWedged(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := &timedNotes{}
		const wd = 10 * time.Second
		s := newSyncer(Deps{Notifier: n, WatchdogInterval: wd}, Config{Collection: "c", Timeout: 30 * time.Second})
		start := time.Now()
		stop := s.watchdog()
		release := make(chan struct{})
		go func() {
			_ = s.call(t.Context(), "upsert", func(context.Context) error { <-release; return nil })
		}()
		time.Sleep(10 * time.Minute)
		pings := n.times(NotifyWatchdog)
		if len(pings) == 0 || len(pings) > 7 {
			t.Fatalf("%d pings", len(pings))
		}
		if end := pings[len(pings)-1].Sub(start); end > 31*time.Second {
			t.Fatalf("pinged %s after the call wedged (bound 31 s)", end)
		}
		close(release)
		stop()
	})
}

// TestReadyBeforeQdrantAnswers: with Qdrant down at boot, Run sends
// READY=1 at once (it does not wait for the collection), keeps retrying,
// and stops cleanly with STOPPING=1.
func TestReadyBeforeQdrantAnswers(t *testing.T) {
	e := newEnv(t, 10, qdranttest.Options{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close() // nothing listens there now
	dead, err := Connect(Conn{Host: "127.0.0.1", Port: port})
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	n := &notes{}
	d := e.deps
	d.Qdrant, d.Notifier = dead, n
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, d, e.cfg, RunOptions{}) }()
	for !strings.Contains(e.logs.String(), "qdrant unavailable") {
		time.Sleep(time.Millisecond)
	}
	if got := n.String(); got != NotifyReady {
		t.Fatalf("notifications while Qdrant is down: %q", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := n.String(); got != "READY=1,STOPPING=1" {
		t.Fatalf("notifications %q", got)
	}
}
