package metrics

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func TestCheckAddr(t *testing.T) {
	for _, tc := range []struct {
		addr string
		ok   bool
		want string // in the reason
	}{
		{"127.0.0.1:9731", true, ""},
		{"0.0.0.0:9731", true, ""},
		{"localhost:9731", true, ""},
		{"[::1]:9731", true, ""},
		{"127.0.0.1:0", true, ""},
		{"metrics.example.org:80", true, ""},
		{":9731", false, "write 127.0.0.1:9731 (this host only) or 0.0.0.0:9731 (every interface) explicitly"},
		{"9731", false, "want HOST:PORT"},
		{"127.0.0.1", false, "want HOST:PORT"},
		{"127.0.0.1:http", false, `port "http" is not a number`},
		{"127.0.0.1:65536", false, "0..65535"},
		{"127.0.0.1:-1", false, "0..65535"},
		{"127.0.0.1:09731", false, "0..65535"},
		{"bad host:1", false, "neither an IP address nor a host name"},
		{"", false, "want HOST:PORT"},
	} {
		err := CheckAddr(tc.addr)
		if tc.ok {
			if err != nil {
				t.Errorf("CheckAddr(%q) = %v, want nil", tc.addr, err)
			}
			continue
		}
		var ae *AddrError
		if !errors.As(err, &ae) || !errors.Is(err, ErrAddr) {
			t.Errorf("CheckAddr(%q) = %v, want an *AddrError wrapping ErrAddr", tc.addr, err)
			continue
		}
		if !strings.Contains(ae.Reason, tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("CheckAddr(%q) = %q, want one line containing %q", tc.addr, err, tc.want)
		}
	}
}

// TestListenRefusesBeforeListening: a refused address opens nothing.
func TestListenRefusesBeforeListening(t *testing.T) {
	s, err := Listen(":0", NewRegistry("x"), nil)
	if !errors.Is(err, ErrAddr) || s != nil {
		t.Fatalf("Listen(:0) = %v, %v; want ErrAddr and no server", s, err)
	}
}

// TestServe runs the real server on a loopback port, scrapes /metrics
// with an HTTP client, parses it with the Prometheus text parser, and
// checks the index page, an unknown path and the shutdown on ctx.
func TestServe(t *testing.T) {
	reg := NewRegistry("9.9.9")
	m := NewSnap(reg, SnapOptions{Interval: time.Second})
	m.SetLive(4)
	s, err := Listen("127.0.0.1:0", reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	base := "http://" + s.Addr()

	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	if got := fams["ghostbridge_snap_snapshots_live"].GetMetric()[0].GetGauge().GetValue(); got != 4 {
		t.Errorf("snapshots live over HTTP = %v, want 4", got)
	}
	bi := fams["ghostbridge_build_info"]
	if bi == nil || len(bi.GetMetric()) != 1 {
		t.Fatalf("ghostbridge_build_info missing: %v", bi)
	}
	var version string
	for _, l := range bi.GetMetric()[0].GetLabel() {
		if l.GetName() == "version" {
			version = l.GetValue()
		}
	}
	if version != "9.9.9" {
		t.Errorf("build_info version %q, want 9.9.9", version)
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes", "ghostbridge_snap_tick_duration_seconds"} {
		if fams[name] == nil {
			t.Errorf("%s not served", name)
		}
	}

	resp, err = http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `href="/metrics"`) {
		t.Errorf("/: %s %q, want 200 and a link to /metrics", resp.Status, body)
	}
	resp, err = http.Get(base + "/nope")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("/nope: %s, want 404", resp.Status)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve after cancel = %v, want nil", err)
	}
	if c, err := net.Dial("tcp", s.Addr()); err == nil {
		c.Close()
		t.Error("still listening after shutdown")
	}
}

// TestServerCutsSlowClient: a client that sends part of its request
// headers and then nothing (slowloris) is disconnected by the server
// once ReadHeaderTimeout passes, while a normal scrape on another
// connection is served meanwhile. The wait is bounded by a hang guard,
// not asserted as a duration.
func TestServerCutsSlowClient(t *testing.T) {
	s, err := Listen("127.0.0.1:0", NewRegistry("x"), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	slow, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	if _, err := io.WriteString(slow, "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: "); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + s.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape beside a slow client: %s", resp.Status)
	}
	// Hang guard, far beyond the server's timeouts.
	if err := slow.SetReadDeadline(time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(io.Discard, slow)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("the server still holds a connection whose headers never finished")
	}
	// io.Copy returns nil at EOF: the server closed the connection.
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("reading the slow connection: %v", err)
	}
}
