// Package vector keeps a Qdrant collection of the chain's events, exactly
// once, and searches it: each block becomes one point whose ID is the
// block's height, whose vector comes from an Embedder and whose payload
// holds the block's fields. A cursor in the chain database records the last
// height Qdrant acknowledged, so a sync killed at any moment resumes without
// losing or doubling a point.
//
// It talks to Qdrant through github.com/qdrant/go-client over gRPC. It must
// not print, read flags, environment or configuration files, or exit; it
// must never recreate or delete a collection it did not just create, and
// never log the API key.
package vector

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/qdrant/go-client/qdrant"

	"github.com/ghostbridge/ghostbridge/pkg/chain"
)

// Defaults for Config fields left zero.
const (
	DefaultBatch    = 100
	DefaultParallel = 4
	DefaultInterval = time.Second
	DefaultTimeout  = 30 * time.Second
	DefaultPort     = 6334
)

// Conn says how to reach Qdrant's gRPC API.
type Conn struct {
	Host string
	Port int
	TLS  bool
	// RootCAs, when set, are the only certificates the server's chain may
	// end in (a private CA); nil means the system's roots. TLS only.
	RootCAs *x509.CertPool
	APIKey  string // sent as "api-key" metadata; never logged
}

// String names the endpoint without the key.
func (c Conn) String() string {
	scheme := "grpc"
	if c.TLS {
		scheme = "grpcs"
	}
	return fmt.Sprintf("%s://%s:%d", scheme, c.Host, c.Port)
}

// Connect returns a client for c. Connections are made lazily, so it
// succeeds while Qdrant is down; calls then fail with Unavailable and the
// sync retries them.
func Connect(c Conn) (*qdrant.Client, error) {
	if c.Host == "" {
		return nil, fmt.Errorf("%w: host is empty", ErrInvalidConfig)
	}
	if c.Port <= 0 || c.Port > 65535 {
		return nil, fmt.Errorf("%w: port %d (allowed 1..65535)", ErrInvalidConfig, c.Port)
	}
	if c.RootCAs != nil && !c.TLS {
		return nil, fmt.Errorf("%w: a CA bundle is set but TLS is off", ErrInvalidConfig)
	}
	var tc *tls.Config
	if c.TLS {
		// The client's own default when given no config, plus the roots.
		tc = &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: c.RootCAs}
	}
	cl, err := qdrant.NewClient(&qdrant.Config{
		Host:      c.Host,
		Port:      c.Port,
		APIKey:    c.APIKey,
		UseTLS:    c.TLS,
		TLSConfig: tc,
		// The check is a health call at construction that logs through
		// the global logger; sync must start even while Qdrant is down.
		SkipCompatibilityCheck: true,
		PoolSize:               1,
	})
	if err != nil {
		return nil, fmt.Errorf("qdrant %s: %w", c, err)
	}
	return cl, nil
}

// ParseCABundle reads PEM certificates (a CA bundle) into a pool for
// Conn.RootCAs. Blocks of other types are ignored; a certificate block that
// does not parse, or a bundle without any certificate, is an error wrapping
// ErrInvalidConfig.
func ParseCABundle(data []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	n := 0
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: certificate %d of the CA bundle: %w", ErrInvalidConfig, n+1, err)
		}
		pool.AddCert(cert)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("%w: the CA bundle holds no PEM certificate", ErrInvalidConfig)
	}
	return pool, nil
}

// Collection name limits, from Qdrant's request validation: the length on
// every call naming a collection, the characters when one is created.
// Reindex makes a collection named after the configured one plus a suffix,
// so a configured name must leave room for it.
const (
	// MaxQdrantName is the most characters Qdrant takes in a collection name.
	MaxQdrantName = 255
	// QdrantNameForbidden holds the characters Qdrant refuses in a new
	// collection's name.
	QdrantNameForbidden = "<>:\"/\\|?*\x00\x1f"
	// ReindexSuffixLen is the length of what Reindex appends to the
	// configured name: "-", the UTC time to the nanosecond, "-", 4 hex digits.
	ReindexSuffixLen = len("-") + len(targetTimeLayout) + len("-ffff")
	// MaxCollection is the most characters a configured collection name
	// may have.
	MaxCollection = MaxQdrantName - ReindexSuffixLen
)

// validCollection checks a configured collection name against Qdrant's
// rules with room for the reindex suffix.
func validCollection(name string) error {
	switch n := utf8.RuneCountInString(name); {
	case n == 0:
		return fmt.Errorf("%w: collection is empty", ErrInvalidConfig)
	case n > MaxCollection:
		return fmt.Errorf("%w: collection name is %d characters, at most %d allowed (Qdrant's limit is %d and reindex appends %d)",
			ErrInvalidConfig, n, MaxCollection, MaxQdrantName, ReindexSuffixLen)
	}
	if i := strings.IndexAny(name, QdrantNameForbidden); i >= 0 {
		return fmt.Errorf("%w: collection name %q holds %q, which Qdrant forbids", ErrInvalidConfig, name, name[i])
	}
	return nil
}

// Distance is a Qdrant distance function by its Qdrant name.
type Distance string

// Distances Qdrant offers.
const (
	Cosine    Distance = "Cosine"
	Dot       Distance = "Dot"
	Euclid    Distance = "Euclid"
	Manhattan Distance = "Manhattan"
)

// ParseDistance accepts a distance name in any letter case.
func ParseDistance(s string) (Distance, error) {
	for _, d := range []Distance{Cosine, Dot, Euclid, Manhattan} {
		if strings.EqualFold(s, string(d)) {
			return d, nil
		}
	}
	return "", fmt.Errorf("%w: distance %q (allowed Cosine, Dot, Euclid, Manhattan)", ErrInvalidConfig, s)
}

func (d Distance) proto() qdrant.Distance {
	return qdrant.Distance(qdrant.Distance_value[string(d)])
}

// Backoff shapes retries while Qdrant is unavailable: the n-th wait is
// drawn uniformly from [w/2, w] with w = min(Max, Initial·2^n).
type Backoff struct {
	Initial, Max time.Duration
}

// Config is what a sync needs beyond its dependencies.
type Config struct {
	Collection string
	Distance   Distance      // "": Cosine
	Batch      int           // points per upsert; 0: DefaultBatch
	Parallel   int           // upserts in flight; 0: DefaultParallel
	Interval   time.Duration // between polls of the chain; 0: DefaultInterval
	Timeout    time.Duration // per Qdrant call; 0: DefaultTimeout
	Backoff    Backoff       // zero: 100ms doubling to 30s
	// SkipPoison moves past a block Qdrant rejects for good, recording it
	// (log and a "vector-skipped/" cursor) instead of stopping.
	SkipPoison bool
}

func (c Config) withDefaults() Config {
	if c.Distance == "" {
		c.Distance = Cosine
	}
	if c.Batch <= 0 {
		c.Batch = DefaultBatch
	}
	if c.Parallel <= 0 {
		c.Parallel = DefaultParallel
	}
	if c.Interval <= 0 {
		c.Interval = DefaultInterval
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Backoff.Initial <= 0 {
		c.Backoff.Initial = 100 * time.Millisecond
	}
	if c.Backoff.Max < c.Backoff.Initial {
		c.Backoff.Max = max(30*time.Second, c.Backoff.Initial)
	}
	return c
}

// Validate reports the first problem with c, wrapping ErrInvalidConfig.
func (c Config) Validate() error {
	if err := validCollection(c.Collection); err != nil {
		return err
	}
	switch {
	case c.Batch < 0 || c.Batch > 10000:
		return fmt.Errorf("%w: batch %d (allowed 1..10000)", ErrInvalidConfig, c.Batch)
	case c.Interval < 0:
		return fmt.Errorf("%w: interval %s is negative", ErrInvalidConfig, c.Interval)
	}
	if c.Distance != "" {
		if _, err := ParseDistance(string(c.Distance)); err != nil {
			return err
		}
	}
	return nil
}

// Notifier tells a service manager about the loop's state ("READY=1",
// "WATCHDOG=1", "STOPPING=1"). *systemd.Notifier implements it.
type Notifier interface {
	Notify(state string) error
}

// Deps are the components a sync, status or search works with.
type Deps struct {
	Chain    *chain.Store
	Qdrant   *qdrant.Client
	Embedder Embedder
	Notifier Notifier // nil: none
	// WatchdogInterval is the service manager's watchdog timeout (0: none);
	// Run pings twice per interval while its loop is alive.
	WatchdogInterval time.Duration
	Logger           *slog.Logger     // nil: discard
	Now              func() time.Time // nil: time.Now
}

func (d Deps) log() *slog.Logger {
	if d.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return d.Logger
}

func (d Deps) now() time.Time {
	if d.Now == nil {
		return time.Now()
	}
	return d.Now()
}

func (d Deps) notify(state string) {
	if d.Notifier == nil {
		return
	}
	if err := d.Notifier.Notify(state); err != nil {
		d.log().Warn("service manager notification failed", "state", state, "err", err)
	}
}

// CursorName is the chain-database cursor holding the last height the
// collection acknowledged.
func CursorName(collection string) string { return "vector/" + collection }

// skippedPrefix starts the names of a collection's skipped-block cursors.
func skippedPrefix(collection string) string { return "vector-skipped/" + collection + "/" }

// skippedCursorName records a block skipped by SkipPoison.
func skippedCursorName(collection string, height uint64) string {
	return fmt.Sprintf("%s%d", skippedPrefix(collection), height)
}

// ErrCollectionMismatch: the collection exists with another vector size
// or distance than configured. It is never recreated automatically.
var ErrCollectionMismatch = errors.New("collection parameters differ from the configuration")

// MismatchError says how an existing collection differs.
type MismatchError struct {
	Collection           string
	WantSize, GotSize    uint64
	WantDist, GotDist    Distance
	NamedOrSparseVectors bool
}

func (e *MismatchError) Error() string {
	if e.NamedOrSparseVectors {
		return fmt.Sprintf("collection %q has named vectors, not one unnamed dense vector: refusing to use it (choose another collection or remove it yourself)", e.Collection)
	}
	return fmt.Sprintf("collection %q has vector size %d and distance %s, configuration wants size %d and distance %s: refusing to use it (fix [vector] dimension/distance, choose another collection, or remove it yourself)",
		e.Collection, e.GotSize, e.GotDist, e.WantSize, e.WantDist)
}

// Unwrap makes errors.Is(err, ErrCollectionMismatch) hold.
func (e *MismatchError) Unwrap() error { return ErrCollectionMismatch }

// PoisonError: Qdrant rejected a block for good; the loop stops on it
// unless SkipPoison is set.
type PoisonError struct {
	Height uint64
	Err    error
}

func (e *PoisonError) Error() string {
	return fmt.Sprintf("block %d rejected by qdrant: %v (use --skip-poison to record it and move on)", e.Height, e.Err)
}

// Unwrap returns Qdrant's error.
func (e *PoisonError) Unwrap() error { return e.Err }
