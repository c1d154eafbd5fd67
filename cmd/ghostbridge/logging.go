package main

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
)

// newLogger builds the one logger of a run. Logs go to stderr so stdout
// stays results only. Under systemd (JOURNAL_STREAM set) journald stamps
// each line, so ours would be noise.
func newLogger(w io.Writer, level, format string, journal bool) *slog.Logger {
	var lv slog.Level
	switch level {
	case "debug":
		lv = slog.LevelDebug
	case "warn":
		lv = slog.LevelWarn
	case "error":
		lv = slog.LevelError
	default:
		lv = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: lv}
	if journal {
		opts.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}
	}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// defaultLog is the process's slog default. Libraries that log through
// slog.Default (the Qdrant client warns there about an API key sent
// without TLS) must reach the running command's logger, with its level,
// format and stream. slog.SetDefault is called once per process with a
// handler that forwards to the App that last built its logger; tests
// build many Apps in one process, and each only swaps an atomic pointer
// (and clears it when its Run ends, so a finished test's buffers never
// receive a later record).
var defaultLog struct {
	once sync.Once
	cur  atomic.Pointer[slog.Logger]
}

// claimDefaultLog makes a.log the target of slog.Default.
func (a *App) claimDefaultLog() {
	defaultLog.once.Do(func() { slog.SetDefault(slog.New(forwardHandler{})) })
	defaultLog.cur.Store(a.log)
}

// releaseDefaultLog drops a.log as the target of slog.Default, unless
// another App has claimed it since.
func (a *App) releaseDefaultLog() {
	defaultLog.cur.CompareAndSwap(a.log, nil)
}

// forwardHandler passes records to the claimed logger's handler, applying
// the attributes and groups added on the way; with none claimed it
// discards, as an App does before its logger is built.
type forwardHandler struct {
	with []func(slog.Handler) slog.Handler
}

func (h forwardHandler) target() slog.Handler {
	l := defaultLog.cur.Load()
	if l == nil {
		return slog.DiscardHandler
	}
	t := l.Handler()
	for _, w := range h.with {
		t = w(t)
	}
	return t
}

func (h forwardHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.target().Enabled(ctx, level)
}

func (h forwardHandler) Handle(ctx context.Context, r slog.Record) error {
	// The target may have changed since Enabled was asked.
	t := h.target()
	if !t.Enabled(ctx, r.Level) {
		return nil
	}
	return t.Handle(ctx, r)
}

func (h forwardHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return forwardHandler{with: append(slices.Clip(h.with), func(t slog.Handler) slog.Handler { return t.WithAttrs(attrs) })}
}

func (h forwardHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return forwardHandler{with: append(slices.Clip(h.with), func(t slog.Handler) slog.Handler { return t.WithGroup(name) })}
}
