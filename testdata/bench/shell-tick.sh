#!/usr/bin/env bash
# shell-tick.sh SOURCE DIR DB TICKS KEEP: the snapshot loop an operator
# would write by hand, kept as the baseline that `make bench` measures
# ghostbridge's `snap run` against. Each tick: a read-only snapshot with the
# btrfs CLI, a SHA-256 link with sha256sum, one sqlite3 INSERT, and deletion
# of snapshots beyond the newest KEEP. It runs TICKS ticks back to back.
set -euo pipefail

src=$1 dir=$2 db=$3 ticks=$4 keep=$5
mkdir -p "$dir"
sqlite3 "$db" "PRAGMA journal_mode=WAL; CREATE TABLE IF NOT EXISTS chain (height INTEGER PRIMARY KEY, ts TEXT, snapshot TEXT, prev TEXT, hash TEXT)" >/dev/null
prev=$(sqlite3 "$db" "SELECT hash FROM chain ORDER BY height DESC LIMIT 1")
prev=${prev:-0000000000000000000000000000000000000000000000000000000000000000}

for ((i = 0; i < ticks; i++)); do
	ts=$(date -u +%Y%m%dT%H%M%S.%NZ)
	snap="$dir/$ts"
	btrfs subvolume snapshot -r "$src" "$snap" >/dev/null
	hash=$(printf '%s %s %s' "$prev" "$ts" "$snap" | sha256sum | cut -d' ' -f1)
	sqlite3 "$db" "INSERT INTO chain (ts, snapshot, prev, hash) VALUES ('$ts', '$snap', '$prev', '$hash')"
	prev=$hash
	ls -1 "$dir" | sort | head -n "-$keep" | while read -r old; do
		btrfs subvolume delete "$dir/$old" >/dev/null
		sqlite3 "$db" "INSERT INTO chain (ts, snapshot, prev, hash) VALUES ('$(date -u +%s)', 'deleted $old', '$prev', '')"
	done
done
