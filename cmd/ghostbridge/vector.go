package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/ghostbridge/ghostbridge/pkg/chain"
	"github.com/ghostbridge/ghostbridge/pkg/sys/regfile"
	"github.com/ghostbridge/ghostbridge/pkg/vector"
	"github.com/qdrant/go-client/qdrant"
	"github.com/spf13/cobra"
)

func newVectorCmd(a *App) *cobra.Command {
	cmd := newGroupCmd("vector", "Index chain events in Qdrant and search them", `Keep a Qdrant collection of the chain's events, one point per block
(point ID = block height, payload = every block field, vector made from the
event's metadata), and search it for events like a given one.

Qdrant is reached over gRPC as the [vector] config table says (host, port,
tls, tls_ca_file, collection, dimension, distance, batch, interval); with
tls_ca_file the server's certificate must chain to a CA in that PEM bundle
instead of the system's roots. The API key comes
from the file vector.api_key_file names, else from `+apiKeyEnv+`;
it is never a flag and never logged.`)
	cmd.AddCommand(newVectorSyncCmd(a), newVectorStatusCmd(a), newVectorSearchCmd(a), newVectorReindexCmd(a))
	return cmd
}

// vectorSession is what a vector command works with; close releases it.
type vectorSession struct {
	deps vector.Deps
	cfg  vector.Config
	st   *chain.Store
	cl   *qdrant.Client
}

func (s *vectorSession) close() error {
	return errors.Join(s.cl.Close(), s.st.Close())
}

// openVector reads the API key, connects to Qdrant and opens the chain.
// Configuration mistakes (the key file, the database path) come first and
// touch nothing.
func (a *App) openVector(ctx context.Context, write bool) (*vectorSession, error) {
	vc := a.conf.Config.Vector
	key, err := a.qdrantAPIKey()
	if err != nil {
		return nil, err
	}
	dist, err := vector.ParseDistance(vc.Distance)
	if err != nil {
		return nil, err
	}
	emb, err := vector.NewMetaEmbedder(vc.Dimension)
	if err != nil {
		return nil, err
	}
	if write {
		if err := a.checkDB(dbWrite); err != nil {
			return nil, err
		}
	}
	roots, err := a.qdrantRootCAs()
	if err != nil {
		return nil, err
	}
	cl, err := vector.Connect(vector.Conn{Host: vc.Host, Port: vc.Port, TLS: vc.TLS, RootCAs: roots, APIKey: key})
	if err != nil {
		return nil, err
	}
	st, err := a.openChain(ctx, false)
	if err != nil {
		return nil, errors.Join(err, cl.Close())
	}
	return &vectorSession{
		st: st, cl: cl,
		deps: vector.Deps{Chain: st, Qdrant: cl, Embedder: emb, Logger: a.log, Now: a.Now},
		cfg: vector.Config{
			Collection: vc.Collection,
			Distance:   dist,
			Batch:      vc.Batch,
			Interval:   time.Duration(vc.Interval),
		},
	}, nil
}

// qdrantAPIKey returns the API key from vector.api_key_file or the
// environment, or "" for none. The key never appears in an error.
func (a *App) qdrantAPIKey() (string, error) {
	path := a.conf.Config.Vector.APIKeyFile
	if path == "" {
		return strings.TrimSpace(a.Env(apiKeyEnv)), nil
	}
	problem := func(want string) error {
		return &ConfigError{Problems: []Problem{{
			Key: "vector.api_key_file", Value: showSecretPath(path),
			Origin: originOf(a.conf.Origins, "vector.api_key_file"), Want: want,
		}}}
	}
	fi, err := os.Stat(path)
	if err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o077 != 0 {
		// Like signing keys: a secret others can read is refused.
		return "", problem(fmt.Sprintf("a file only its owner can read (mode %04o; chmod 600 it)", fi.Mode().Perm()))
	}
	b, err := regfile.Read(path, 0)
	if err != nil {
		return "", problem(fmt.Sprintf("a readable file holding the Qdrant API key: %v", pathErrno(err)))
	}
	key := strings.TrimSpace(string(b))
	switch {
	case key == "":
		return "", problem("a file holding the Qdrant API key (the file is empty)")
	case strings.ContainsAny(key, "\r\n"):
		return "", problem("a file holding the Qdrant API key on one line")
	}
	return key, nil
}

// qdrantRootCAs reads the CA bundle vector.tls_ca_file names, or returns
// nil (the system's roots) when it is "". A file that cannot be read or
// holds no certificate is a config problem of that key.
func (a *App) qdrantRootCAs() (*x509.CertPool, error) {
	vc := a.conf.Config.Vector
	path := vc.TLSCAFile
	if path == "" {
		return nil, nil
	}
	problem := func(want string) error {
		return &ConfigError{Problems: []Problem{{
			Key: "vector.tls_ca_file", Value: showValue(path),
			Origin: originOf(a.conf.Origins, "vector.tls_ca_file"), Want: want,
		}}}
	}
	if !vc.TLS {
		// Validate refuses this already; kept so no caller trusts a CA
		// over plaintext.
		return nil, problem(`"" while vector.tls is false`)
	}
	b, err := regfile.Read(path, 0)
	if err != nil {
		return nil, problem(fmt.Sprintf("a readable PEM file of CA certificates: %v", pathErrno(err)))
	}
	pool, err := vector.ParseCABundle(b)
	if err != nil {
		why := strings.TrimPrefix(err.Error(), vector.ErrInvalidConfig.Error()+": ")
		return nil, problem("a PEM file of CA certificates (" + why + ")")
	}
	return pool, nil
}
