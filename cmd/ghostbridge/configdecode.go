package main

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// decodeConfig converts the layered raw values (as a config file, the
// environment or a flag gave them) into a Config. A value of the wrong type
// is reported and replaced by its default, so Validate sees only values
// that were well-typed. It is pure: get is viper's Get in production.
func decodeConfig(get func(key string) any) (Config, []Problem) {
	cfg := defaultConfig()
	var ps []Problem
	bad := func(key string, v any, want string) {
		if want == "" {
			want = wantFor(key)
		}
		ps = append(ps, Problem{Key: key, Value: showValue(v), Want: want})
	}
	str := func(key string, dst *string) {
		switch v := get(key).(type) {
		case nil:
		case string:
			*dst = v
		default:
			bad(key, v, "a string: "+wantFor(key))
		}
	}
	dur := func(key string, dst *Duration) {
		raw := get(key)
		if raw == nil {
			return
		}
		d, ok := parseDuration(raw)
		if !ok {
			bad(key, raw, "")
			return
		}
		*dst = d
	}
	str("db", &cfg.DB)
	str("log.level", &cfg.Log.Level)
	str("log.format", &cfg.Log.Format)
	str("snap.dir", &cfg.Snap.Dir)
	dur("snap.interval", &cfg.Snap.Interval)
	dur("snap.keep", &cfg.Snap.Keep)
	str("snap.metrics_listen", &cfg.Snap.MetricsListen)
	str("chain.signing_key", &cfg.Chain.SigningKey)
	str("chain.verifier_key", &cfg.Chain.VerifierKey)
	str("chain.checkpoint_file", &cfg.Chain.CheckpointFile)
	str("chain.origin", &cfg.Chain.Origin)
	dur("chain.checkpoint_interval", &cfg.Chain.CheckpointInterval)
	if raw := get("chain.checkpoint_every"); raw != nil {
		n, ok := parseCount(raw)
		if !ok {
			bad("chain.checkpoint_every", raw, "")
		} else {
			cfg.Chain.CheckpointEvery = n
		}
	}

	switch v := get("snap.sources").(type) {
	case nil:
	case string: // GHOSTBRIDGE_SNAP_SOURCES: comma-separated
		cfg.Snap.Sources = splitList(v)
	case []string:
		cfg.Snap.Sources = v
	case []any:
		list := make([]string, 0, len(v))
		ok := true
		for i, e := range v {
			s, isStr := e.(string)
			if !isStr {
				bad(fmt.Sprintf("snap.sources[%d]", i), e, "a string: "+wantFor("snap.sources"))
				ok = false
				continue
			}
			list = append(list, s)
		}
		if ok {
			cfg.Snap.Sources = list
		}
	default:
		bad("snap.sources", v, "")
	}

	// Tiers that decoded still go to Validate, so one run names every
	// problem, including range problems next to a typo.
	tiers, tierProblems := decodeTiers(get("snap.tiers"))
	ps = append(ps, tierProblems...)
	// Empty lists stay lists: `config show --format json` prints [] for
	// them, never null.
	cfg.Snap.Tiers = nonNil(tiers)
	cfg.Snap.Sources = nonNil(cfg.Snap.Sources)
	ps = append(ps, decodeVector(get, &cfg.Vector)...)
	ps = append(ps, decodeNet(get, &cfg.Net)...)
	ps = append(ps, decodeVM(get, &cfg.VM)...)
	ps = append(ps, decodeDiag(get, &cfg.Diag)...)
	return cfg, ps
}

// parseDuration accepts a Go duration string. Numbers are refused: a bare 1
// could mean a second or a nanosecond, and guessing is worse than asking.
func parseDuration(raw any) (Duration, bool) {
	switch v := raw.(type) {
	case string:
		d, err := time.ParseDuration(strings.TrimSpace(v))
		return Duration(d), err == nil
	case time.Duration:
		return Duration(v), true
	case Duration:
		return v, true
	}
	return 0, false
}

// parseCount accepts a whole number >= 0: an integer from TOML or YAML, a
// whole float from JSON, or decimal digits from the environment.
func parseCount(raw any) (uint64, bool) {
	switch v := raw.(type) {
	case int:
		return uint64(v), v >= 0
	case int64:
		return uint64(v), v >= 0
	case uint64:
		return v, true
	case float64:
		if v < 0 || v != math.Trunc(v) || v > 1<<53 {
			return 0, false
		}
		return uint64(v), true
	case string:
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		return n, err == nil
	}
	return 0, false
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// decodeTiers reads snap.tiers: a list of {every, for} tables from a file,
// or "EVERY:FOR,EVERY:FOR" from GHOSTBRIDGE_SNAP_TIERS.
func decodeTiers(raw any) ([]TierConfig, []Problem) {
	var ps []Problem
	var out []TierConfig
	switch v := raw.(type) {
	case nil:
		return nil, nil
	case string:
		for i, item := range splitList(v) {
			key := fmt.Sprintf("snap.tiers[%d]", i)
			e, f, ok := strings.Cut(item, ":")
			every, ok1 := parseDuration(e)
			forD, ok2 := parseDuration(f)
			if !ok || !ok1 || !ok2 {
				ps = append(ps, Problem{Key: key, Value: showValue(item), Want: `EVERY:FOR with Go durations, e.g. "1m:1h"`})
				continue
			}
			out = append(out, TierConfig{Every: every, For: forD})
		}
	case []any:
		for i, item := range v {
			// A tier that did not decode keeps its place so later indices
			// stay right; loadConfig drops Validate's complaints about it.
			t, _, tps := decodeTier(fmt.Sprintf("snap.tiers[%d]", i), item)
			ps = append(ps, tps...)
			out = append(out, t)
		}
	default:
		ps = append(ps, Problem{Key: "snap.tiers", Value: showValue(v), Want: wantFor("snap.tiers")})
	}
	return out, ps
}

// decodeTier reads one tier; ok means both durations decoded (unknown
// extra keys are reported but do not spoil the tier).
func decodeTier(key string, item any) (t TierConfig, ok bool, ps []Problem) {
	m, isMap := toStringMap(item)
	if !isMap {
		return t, false, []Problem{{Key: key, Value: showValue(item), Want: "a table {every = DURATION, for = DURATION}"}}
	}
	parsed := 0
	seen := map[string]bool{}
	for k, val := range m {
		lk := strings.ToLower(k)
		var dst *Duration
		switch lk {
		case "every":
			dst = &t.Every
		case "for":
			dst = &t.For
		default:
			ps = append(ps, Problem{Key: key + "." + k, Want: "unknown key; a tier allows every, for"})
			continue
		}
		seen[lk] = true
		d, isDur := parseDuration(val)
		if !isDur {
			ps = append(ps, Problem{Key: key + "." + lk, Value: showValue(val), Want: `a Go duration, e.g. "1m"`})
			continue
		}
		*dst = d
		parsed++
	}
	for _, need := range []string{"every", "for"} {
		if !seen[need] {
			ps = append(ps, Problem{Key: key + "." + need, Want: "a Go duration (missing)"})
		}
	}
	sortProblems(ps)
	return t, parsed == 2, ps
}

func toStringMap(v any) (map[string]any, bool) {
	switch m := v.(type) {
	case map[string]any:
		return m, true
	case map[any]any:
		out := make(map[string]any, len(m))
		for k, val := range m {
			out[fmt.Sprint(k)] = val
		}
		return out, true
	}
	return nil, false
}

// sortProblems orders problems by key so output does not depend on map
// iteration order.
func sortProblems(ps []Problem) {
	slices.SortStableFunc(ps, func(a, b Problem) int { return strings.Compare(a.Key, b.Key) })
}
