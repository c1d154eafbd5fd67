package main

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/ghostbridge/ghostbridge/pkg/vector"
)

// VectorConfig is the [vector] table: where Qdrant is and how the chain's
// events are indexed there. The API key is never a value here: it is read
// from api_key_file or GHOSTBRIDGE_QDRANT_API_KEY, so `config show` and
// error messages cannot leak it.
type VectorConfig struct {
	Host string `json:"host"`
	Port int    `json:"port"`
	TLS  bool   `json:"tls"`
	// TLSCAFile is a PEM bundle of the CAs Qdrant's certificate must chain
	// to; "" means the system's roots.
	TLSCAFile  string   `json:"tls_ca_file"`
	APIKeyFile string   `json:"api_key_file"`
	Collection string   `json:"collection"`
	Dimension  int      `json:"dimension"`
	Distance   string   `json:"distance"`
	Batch      int      `json:"batch"`
	Interval   Duration `json:"interval"`
	// MetricsListen is where `vector sync` serves Prometheus metrics
	// (HOST:PORT); "" means no metrics server.
	MetricsListen string `json:"metrics_listen"`
}

// apiKeyEnv holds the Qdrant API key itself, for hosts that inject
// secrets through the environment (systemd LoadCredential, EnvironmentFile).
const apiKeyEnv = "GHOSTBRIDGE_QDRANT_API_KEY"

func defaultVectorConfig() VectorConfig {
	return VectorConfig{
		Host:       "localhost",
		Port:       vector.DefaultPort,
		Collection: "ghostbridge-events",
		Dimension:  vector.DefaultDim,
		Distance:   string(vector.Cosine),
		Batch:      vector.DefaultBatch,
		Interval:   Duration(vector.DefaultInterval),
	}
}

// collectionName leaves room for the suffix `vector reindex` appends
// within Qdrant's limit on collection names.
var collectionName = regexp.MustCompile(fmt.Sprintf(`^[A-Za-z0-9_.-]{1,%d}$`, vector.MaxCollection))

// decodeVector reads the [vector] keys; get is viper's Get.
func decodeVector(get func(string) any, dst *VectorConfig) []Problem {
	var ps []Problem
	bad := func(key string, v any) {
		val := showValue(v)
		if key == "vector.api_key_file" {
			val = showSecretPath(v)
		}
		ps = append(ps, Problem{Key: key, Value: val, Want: wantFor(key)})
	}
	str := func(key string, d *string) {
		switch v := get(key).(type) {
		case nil:
		case string:
			*d = v
		default:
			bad(key, v)
		}
	}
	num := func(key string, d *int) {
		raw := get(key)
		if raw == nil {
			return
		}
		n, ok := parseCount(raw)
		if !ok || n > 1<<31 {
			bad(key, raw)
			return
		}
		*d = int(n)
	}
	str("vector.host", &dst.Host)
	num("vector.port", &dst.Port)
	switch v := get("vector.tls").(type) {
	case nil:
	case bool:
		dst.TLS = v
	case string: // GHOSTBRIDGE_VECTOR_TLS
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			bad("vector.tls", v)
		}
		dst.TLS = b
	default:
		bad("vector.tls", v)
	}
	str("vector.tls_ca_file", &dst.TLSCAFile)
	str("vector.api_key_file", &dst.APIKeyFile)
	str("vector.collection", &dst.Collection)
	num("vector.dimension", &dst.Dimension)
	str("vector.distance", &dst.Distance)
	num("vector.batch", &dst.Batch)
	if raw := get("vector.interval"); raw != nil {
		d, ok := parseDuration(raw)
		if !ok {
			bad("vector.interval", raw)
		} else {
			dst.Interval = d
		}
	}
	str("vector.metrics_listen", &dst.MetricsListen)
	return ps
}

// validateVector checks the [vector] table.
func (c Config) validateVector() []Problem {
	var ps []Problem
	v := c.Vector
	bad := func(key string, val any) {
		ps = append(ps, Problem{Key: key, Value: showValue(val), Want: wantFor(key)})
	}
	if h := v.Host; h == "" || strings.ContainsAny(h, " /\t\n") || strings.Contains(h, "://") {
		bad("vector.host", h)
	}
	if v.Port < 1 || v.Port > 65535 {
		bad("vector.port", v.Port)
	}
	switch f := v.TLSCAFile; {
	case f == "":
	case !filepath.IsAbs(f) || strings.HasSuffix(f, "/"):
		bad("vector.tls_ca_file", f)
	case !v.TLS:
		ps = append(ps, Problem{Key: "vector.tls_ca_file", Value: showValue(f),
			Want: `"" while vector.tls is false (a CA bundle is only used over TLS: set vector.tls = true)`})
	}
	if f := v.APIKeyFile; f != "" && (!filepath.IsAbs(f) || strings.HasSuffix(f, "/")) {
		// An operator may have pasted the key itself here.
		ps = append(ps, Problem{Key: "vector.api_key_file", Value: showSecretPath(f), Want: wantFor("vector.api_key_file")})
	}
	if !collectionName.MatchString(v.Collection) {
		bad("vector.collection", v.Collection)
	}
	if v.Dimension < vector.MinDim || v.Dimension > 65536 {
		bad("vector.dimension", v.Dimension)
	}
	if _, err := vector.ParseDistance(v.Distance); err != nil {
		bad("vector.distance", v.Distance)
	}
	if v.Batch < 1 || v.Batch > 10000 {
		bad("vector.batch", v.Batch)
	}
	if d := v.Interval; d < Duration(10e6) || d > Duration(3600e9) {
		bad("vector.interval", d)
	}
	ps = append(ps, listenProblem("vector.metrics_listen", v.MetricsListen)...)
	return ps
}
