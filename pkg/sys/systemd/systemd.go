// Package systemd is the adapter to the service manager's notification
// protocol (sd_notify): readiness, watchdog keep-alives and shutdown, sent
// over $NOTIFY_SOCKET through github.com/coreos/go-systemd/v22/daemon.
//
// It only reports states the caller chooses; it must not decide when a
// service is healthy, and it is a no-op when not started by systemd.
package systemd

import (
	"fmt"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// States understood by the service manager.
const (
	Ready    = daemon.SdNotifyReady    // "READY=1": start-up finished
	Watchdog = daemon.SdNotifyWatchdog // "WATCHDOG=1": still healthy
	Stopping = daemon.SdNotifyStopping // "STOPPING=1": shutting down
)

// Notifier sends states to the service manager. The environment
// (NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID) is read by New; a Notifier
// made without them sends nothing.
type Notifier struct {
	watchdog time.Duration
}

// New returns a Notifier for this process. It fails when WATCHDOG_USEC is
// set but malformed, which is a unit-file mistake worth reporting.
func New() (*Notifier, error) {
	wd, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		return nil, fmt.Errorf("systemd watchdog: %w", err)
	}
	return &Notifier{watchdog: wd}, nil
}

// WatchdogInterval is the watchdog timeout systemd set for this process, or
// 0 when there is none. Keep-alives must come more often than this.
func (n *Notifier) WatchdogInterval() time.Duration { return n.watchdog }

// Notify sends state (e.g. Ready) to $NOTIFY_SOCKET. It does nothing when the
// variable is unset, and drops Watchdog keep-alives when systemd set no
// watchdog for this process, so callers can send them unconditionally.
func (n *Notifier) Notify(state string) error {
	if state == Watchdog && n.watchdog == 0 {
		return nil
	}
	if _, err := daemon.SdNotify(false, state); err != nil {
		return fmt.Errorf("sd_notify %q: %w", state, err)
	}
	return nil
}
