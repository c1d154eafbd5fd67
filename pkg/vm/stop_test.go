package vm

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// TestWaitUntil runs the graceful-stop wait on a fake clock: it returns as
// soon as the guest is off, gives ErrStopTimeout once the timeout passes
// (and not before), and stops early when the context ends.
func TestWaitUntil(t *testing.T) {
	t.Run("off after three polls", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			start, calls := time.Now(), 0
			err := waitUntil(t.Context(), time.Minute, time.Second, func(context.Context) (bool, error) {
				calls++
				return calls == 4, nil
			})
			if err != nil || calls != 4 || time.Since(start) != 3*time.Second {
				t.Errorf("err %v, calls %d, waited %s; want nil, 4, 3s", err, calls, time.Since(start))
			}
		})
	})
	t.Run("timeout", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			start := time.Now()
			err := waitUntil(t.Context(), 5*time.Second, time.Second, func(context.Context) (bool, error) { return false, nil })
			if !errors.Is(err, ErrStopTimeout) || time.Since(start) != 5*time.Second {
				t.Errorf("err %v after %s; want ErrStopTimeout after 5s", err, time.Since(start))
			}
		})
	})
	t.Run("off in the last interval", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			start := time.Now()
			err := waitUntil(t.Context(), 2500*time.Millisecond, time.Second, func(context.Context) (bool, error) {
				return time.Since(start) >= 2500*time.Millisecond, nil
			})
			if err != nil {
				t.Errorf("err %v; want the final look at the deadline to see the guest off", err)
			}
		})
	})
	t.Run("error", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			boom := errors.New("connection lost")
			err := waitUntil(t.Context(), time.Minute, time.Second, func(context.Context) (bool, error) { return false, boom })
			if !errors.Is(err, boom) {
				t.Errorf("err %v; want the poll's error", err)
			}
		})
	})
	t.Run("cancelled", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
			defer cancel()
			err := waitUntil(ctx, time.Minute, time.Second, func(context.Context) (bool, error) { return false, nil })
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("err %v; want the context's error", err)
			}
		})
	})
}

// TestStopOptionsValidate: a graceful stop needs a positive timeout (the
// CLI refuses --timeout 0s with the same rule); --force needs none.
func TestStopOptionsValidate(t *testing.T) {
	for _, c := range []struct {
		opts StopOptions
		ok   bool
	}{
		{StopOptions{Timeout: time.Second}, true},
		{StopOptions{Force: true}, true},
		{StopOptions{}, false},
		{StopOptions{Timeout: -time.Second}, false},
	} {
		err := c.opts.Validate()
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, ErrInvalidConfig)) {
			t.Errorf("%+v: err %v, want ok=%v (else ErrInvalidConfig)", c.opts, err, c.ok)
		}
	}
}
