package systemd_test

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/ghostbridge/ghostbridge/pkg/sys/systemd"
)

// listen stands in for the service manager: a real unixgram socket named by
// NOTIFY_SOCKET.
func listen(t *testing.T) *net.UnixConn {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return conn
}

func recv(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	// The deadline only stops a broken test from hanging; the datagram was
	// sent before recv is called.
	if err := conn.SetReadDeadline(time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

func TestNotifyWithWatchdog(t *testing.T) {
	conn := listen(t)
	t.Setenv("WATCHDOG_USEC", "3000000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	n, err := systemd.New()
	if err != nil {
		t.Fatal(err)
	}
	if got := n.WatchdogInterval(); got != 3*time.Second {
		t.Errorf("WatchdogInterval = %v, want 3s", got)
	}
	for _, state := range []string{systemd.Ready, systemd.Watchdog, systemd.Watchdog, systemd.Stopping} {
		if err := n.Notify(state); err != nil {
			t.Fatal(err)
		}
		if got := recv(t, conn); got != state {
			t.Errorf("received %q, want %q", got, state)
		}
	}
}

func TestWatchdogDroppedWithoutWatchdog(t *testing.T) {
	for name, env := range map[string][2]string{
		"unset":         {"", ""},
		"other process": {"1000000", strconv.Itoa(os.Getpid() + 1)},
	} {
		t.Run(name, func(t *testing.T) {
			conn := listen(t)
			t.Setenv("WATCHDOG_USEC", env[0])
			t.Setenv("WATCHDOG_PID", env[1])
			n, err := systemd.New()
			if err != nil {
				t.Fatal(err)
			}
			if n.WatchdogInterval() != 0 {
				t.Errorf("WatchdogInterval = %v, want 0", n.WatchdogInterval())
			}
			if err := errors.Join(n.Notify(systemd.Watchdog), n.Notify(systemd.Ready)); err != nil {
				t.Fatal(err)
			}
			// Datagrams from one sender arrive in order: if the keep-alive
			// had been sent it would come first.
			if got := recv(t, conn); got != systemd.Ready {
				t.Errorf("first datagram %q, want %q (keep-alive must be dropped)", got, systemd.Ready)
			}
		})
	}
}

func TestNoSocketIsNoop(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "")
	n, err := systemd.New()
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Notify(systemd.Ready); err != nil {
		t.Errorf("Notify without NOTIFY_SOCKET: %v", err)
	}
}

func TestErrors(t *testing.T) {
	t.Setenv("WATCHDOG_USEC", "soon")
	if _, err := systemd.New(); err == nil {
		t.Error("New with WATCHDOG_USEC=soon: no error")
	}
	t.Setenv("WATCHDOG_USEC", "")
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "absent.sock"))
	n, err := systemd.New()
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Notify(systemd.Ready); err == nil {
		t.Error("Notify to a missing socket: no error")
	}
}
