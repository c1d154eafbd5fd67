package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ErrAddr is wrapped by the error of a listen address CheckAddr refuses.
var ErrAddr = errors.New("invalid metrics listen address")

// AddrError is a listen address CheckAddr refuses and why.
type AddrError struct {
	Addr   string
	Reason string // what is wrong and what to write instead
}

func (e *AddrError) Error() string { return fmt.Sprintf("%s %q: %s", ErrAddr, e.Addr, e.Reason) }

// Unwrap returns ErrAddr.
func (e *AddrError) Unwrap() error { return ErrAddr }

var hostName = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$`)

// CheckAddr checks that addr is HOST:PORT with an explicit host (an IP
// address or a host name) and a port 0..65535 (0: the system picks one).
// A bare ":9731" is refused: Go would listen on every interface, and
// metrics stay on localhost unless an operator writes 0.0.0.0 on purpose.
// The error is an *AddrError.
func CheckAddr(addr string) error {
	bad := func(format string, args ...any) error {
		return &AddrError{Addr: addr, Reason: fmt.Sprintf(format, args...)}
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return bad("want HOST:PORT, e.g. 127.0.0.1:9731")
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || port != strconv.FormatUint(n, 10) {
		return bad("port %q is not a number 0..65535", port)
	}
	if host == "" {
		return bad("no host; write 127.0.0.1:%s (this host only) or 0.0.0.0:%s (every interface) explicitly", port, port)
	}
	if net.ParseIP(host) == nil && !hostName.MatchString(host) {
		return bad("host %q is neither an IP address nor a host name", host)
	}
	return nil
}

// Server serves a registry's metrics over HTTP.
type Server struct {
	ln  net.Listener
	srv *http.Server
}

// indexPage is what / shows: where the metrics are.
const indexPage = `<!DOCTYPE html>
<html><head><title>ghostbridge metrics</title></head>
<body><h1>ghostbridge</h1><p><a href="/metrics">/metrics</a></p></body></html>
`

// Listen checks addr (CheckAddr), opens the listener and returns a Server
// ready to Serve g. Errors from HTTP serving are logged to log (nil:
// discarded).
func Listen(addr string, g prometheus.Gatherer, log *slog.Logger) (*Server, error) {
	if err := CheckAddr(addr); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listener %s: %w", addr, err)
	}
	errLog := slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorLog: errLog,
		// A slow scraper cannot pile up collections.
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	}))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(indexPage))
	})
	return &Server{ln: ln, srv: &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       time.Minute,
		ErrorLog:          errLog,
	}}, nil
}

// Addr is the address the server listens on (with the port the system
// chose for port 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// shutdownGrace bounds how long Serve waits for scrapes in flight once ctx
// is done.
const shutdownGrace = 5 * time.Second

// Serve serves until ctx is done, then shuts down gracefully (scrapes in
// flight finish, within a few seconds) and returns nil. It returns an
// error only if serving fails.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("metrics server %s: %w", s.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	err := s.srv.Shutdown(sctx)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	if err != nil {
		return fmt.Errorf("metrics server %s: shutdown: %w", s.Addr(), err)
	}
	return nil
}
