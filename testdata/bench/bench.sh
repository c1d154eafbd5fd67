#!/usr/bin/env bash
# bench.sh: run the benchmarks `make bench` promises and print each figure
# beside its baseline, measured side by side in the same run. Needs root
# (scratch BTRFS on loop devices) and sqlite3; the raw `go test -bench`
# output is kept in bench.out.
set -euo pipefail
cd "$(dirname "$0")/../.."

out=${BENCH_OUT:-bench.out}
: >"$out"
run() { go test -run '^$' -count=1 -timeout 30m "$@" | tee -a "$out"; }

echo "== micro-benchmarks (pkg/...)" >&2
run -bench . -benchmem -benchtime 3x ./pkg/... >&2
echo "== end to end: the built binary against its baselines (internal/e2e)" >&2
run -bench . -benchtime 1x ./internal/e2e >&2

# metric NAME UNIT: the value go test reported for benchmark NAME in UNIT.
metric() {
	awk -v name="$1" -v unit="$2" '$1 ~ "^"name"(-[0-9]+)?$" { for (i = 3; i < NF; i++) if ($(i+1) == unit) print $i }' "$out" | tail -n 1
}

tick_ours=$(metric BenchmarkTickCPU ghostbridge-ms-cpu/tick)
tick_shell=$(metric BenchmarkTickCPU shell-ms-cpu/tick)
tick_x=$(metric BenchmarkTickCPU x-less-cpu)
tick_inproc=$(metric BenchmarkTick cpu-ns/tick)
ver=$(metric BenchmarkChainVerify1M verify-blocks/s)
scan=$(metric BenchmarkChainVerify1M sqlite3-scan-rows/s)
ver_x=$(metric BenchmarkChainVerify1M x-sqlite3-scan-speed)
inc=$(metric BenchmarkVerifyIncremental/blocks=1M ns/op)
prove=$(metric BenchmarkProve/blocks=1M ns/op)
app_with=$(metric BenchmarkAppend/alternating ns/append-with-tree)
app_without=$(metric BenchmarkAppend/alternating ns/append-without)
app_x=$(metric BenchmarkAppend/alternating ratio)
rss1=$(metric BenchmarkSnapRunRSS rss-MB@1k)
rss10=$(metric BenchmarkSnapRunRSS rss-MB@10k)
peak=$(metric BenchmarkSnapRunRSS peak-rss-MB)
diag_wall=$(metric BenchmarkDiagHealthy wall-ms)
diag_sum=$(metric BenchmarkDiagHealthy sum-ms)
diag_slowest=$(metric BenchmarkDiagHealthy slowest-ms)

printf '\n%-36s %-22s %-30s %-8s %s\n' "measure" "ghostbridge" "baseline (same run)" "ratio" "target"
printf '%-36s %-22s %-30s %-8s %s\n' "CPU per steady-state snapshot tick" "${tick_ours} ms" "${tick_shell} ms (shell loop)" "${tick_x}x" ">= 15x less"
printf '%-36s %-22s %-30s %-8s %s\n' "  the tick alone, in process" "$(awk -v n="$tick_inproc" 'BEGIN { printf "%.3f ms", n / 1e6 }')" "${tick_shell} ms (shell loop)" "$(awk -v a="$tick_shell" -v n="$tick_inproc" 'BEGIN { printf "%.1fx", a * 1e6 / n }')" ">= 15x less"
printf '%-36s %-22s %-30s %-8s %s\n' "chain verify, 1,000,001 blocks" "$(printf '%.0f' "$ver") blocks/s" "$(printf '%.0f' "$scan") rows/s (sqlite3 scan)" "${ver_x}x" ">= 1,000,000 blocks/s"
printf '%-36s %-22s %-30s %-8s %s\n' "incremental verify, 60 new blocks" "$(awk -v n="$inc" 'BEGIN { printf "%.2f ms", n / 1e6 }')" "(1M chain; 10M: GHOSTBRIDGE_BENCH_BIG=1)" "" "< 50 ms, flat"
printf '%-36s %-22s %-30s %-8s %s\n' "chain prove, 1M-block chain" "$(awk -v n="$prove" 'BEGIN { printf "%.2f ms", n / 1e6 }')" "" "" "< 10 ms"
printf '%-36s %-22s %-30s %-8s %s\n' "append with tree hashes" "$(awk -v n="$app_with" 'BEGIN { printf "%.0f us", n / 1e3 }')" "$(awk -v n="$app_without" 'BEGIN { printf "%.0f us without", n / 1e3 }')" "${app_x}x" "<= 1.5x"
printf '%-36s %-22s %-30s %-8s %s\n' "snap run RSS after 1k / 10k ticks" "${rss1} / ${rss10} MB" "peak ${peak} MB" "" "< 40 MB, flat"
printf '%-36s %-22s %-30s %-8s %s\n' "diag, healthy host (chain+snapshots)" "${diag_wall} ms wall" "${diag_sum} ms sum of checks" "$(awk -v s="$diag_sum" -v w="$diag_wall" 'BEGIN { printf "%.1fx", s / w }')" "wall ~ slowest (${diag_slowest} ms)"
