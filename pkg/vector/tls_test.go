package vector

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ghostbridge/ghostbridge/pkg/vector/qdranttest"
)

// TestTLSPrivateCA serves the stand-in over TLS with a certificate from a
// CA made here, and reaches it with the production client: trusting the
// CA, a sync lands every block; with the system's roots instead, the sync
// stops at once with a refusal that says the certificate is not trusted
// rather than retrying for ever.
func TestTLSPrivateCA(t *testing.T) {
	ca := qdranttest.NewCA(t)
	e := newEnv(t, 40, qdranttest.Options{})
	srv := qdranttest.Start(t, qdranttest.Options{TLS: ca.ServerTLS(t), APIKey: "k"})
	e.srv = srv
	pool, err := ParseCABundle(ca.PEM)
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"127.0.0.1", "localhost"} {
		t.Run("trusted/"+host, func(t *testing.T) {
			cl, err := Connect(Conn{Host: host, Port: srv.Port(), TLS: true, RootCAs: pool, APIKey: "k"})
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			d := e.deps
			d.Qdrant = cl
			if _, err := Sync(t.Context(), d, e.cfg); err != nil {
				t.Fatal(err)
			}
			e.client = cl
			e.checkExactlyOnce(t)
		})
	}
	t.Run("system roots", func(t *testing.T) {
		cl, err := Connect(Conn{Host: srv.Host(), Port: srv.Port(), TLS: true, APIKey: "k"})
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		d := e.deps
		d.Qdrant = cl
		_, err = Sync(t.Context(), d, e.cfg)
		var re *RefusedError
		if !errors.As(err, &re) || status.Code(err) != codes.Unavailable ||
			!strings.Contains(err.Error(), "x509: certificate signed by unknown authority") ||
			!strings.Contains(err.Error(), "set vector.tls_ca_file") {
			t.Fatalf("untrusted server: %v", err)
		}
	})
	t.Run("another CA", func(t *testing.T) {
		other, err := ParseCABundle(qdranttest.NewCA(t).PEM)
		if err != nil {
			t.Fatal(err)
		}
		cl, err := Connect(Conn{Host: srv.Host(), Port: srv.Port(), TLS: true, RootCAs: other, APIKey: "k"})
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		d := e.deps
		d.Qdrant = cl
		_, err = Sync(t.Context(), d, e.cfg)
		var re *RefusedError
		if !errors.As(err, &re) || !strings.Contains(err.Error(), "x509: certificate signed by unknown authority") {
			t.Fatalf("server of another CA: %v", err)
		}
	})
}

func TestConnectRefusesCAWithoutTLS(t *testing.T) {
	pool := x509.NewCertPool()
	_, err := Connect(Conn{Host: "localhost", Port: DefaultPort, RootCAs: pool})
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "TLS is off") {
		t.Fatalf("CA without TLS: %v", err)
	}
}

func TestParseCABundle(t *testing.T) {
	a, b := qdranttest.NewCA(t).PEM, qdranttest.NewCA(t).PEM
	key := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("not a key")})
	broken := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("not DER")})
	for _, tc := range []struct {
		name  string
		data  []byte
		certs int
		want  string
	}{
		{"one", a, 1, ""},
		{"two with text and a key around", append(append(append([]byte("# bundle\n"), a...), key...), b...), 2, ""},
		{"empty", nil, 0, "holds no PEM certificate"},
		{"key only", key, 0, "holds no PEM certificate"},
		{"not PEM", []byte("hello"), 0, "holds no PEM certificate"},
		{"broken certificate", append(append([]byte{}, a...), broken...), 0, "certificate 2 of the CA bundle"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool, err := ParseCABundle(tc.data)
			if tc.want != "" {
				if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("err %v, want %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			//lint:ignore SA1019 the pool is built from PEM here, never from SystemCertPool, so Subjects lists it all.
			if n := len(pool.Subjects()); n != tc.certs {
				t.Fatalf("%d certificates, want %d", n, tc.certs)
			}
		})
	}
}
