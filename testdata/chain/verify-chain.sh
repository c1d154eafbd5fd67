#!/usr/bin/env bash
# verify-chain.sh DB: recompute every block hash of a ghostbridge chain
# database with nothing but sqlite3 and sha256sum, as the README's "Chain
# format" section describes. Prints "ok: N blocks, head HASH" and exits 0
# when every hash and link checks out; otherwise names the first bad height
# on stderr and exits 3.
set -euo pipefail

if [ $# -ne 1 ]; then
	echo "usage: verify-chain.sh CHAIN.db" >&2
	exit 2
fi
db=$1
[ -r "$db" ] || { echo "verify-chain.sh: cannot read $db" >&2; exit 2; }

sqlite3 -readonly -batch -noheader -separator ' ' "$db" \
	"SELECT height, time_ns, kind, lower(hex(prev)), payload, lower(hex(hash)) FROM blocks ORDER BY height" |
{
	prev=0000000000000000000000000000000000000000000000000000000000000000
	expect=0
	while IFS= read -r line; do
		stored=${line##* }       # the stored hash is the last field
		body=${line% *}          # height time_ns kind prev payload
		IFS=' ' read -r height _ _ link _ <<<"$body"
		if [ "$height" != "$expect" ]; then
			echo "height $expect: missing (next stored is $height)" >&2
			exit 3
		fi
		if [ "$link" != "$prev" ]; then
			echo "height $height: broken link: prev $link, previous hash $prev" >&2
			exit 3
		fi
		computed=$(printf 'ghostbridge.block.v1 %s' "$body" | sha256sum)
		computed=${computed%% *}
		if [ "$computed" != "$stored" ]; then
			echo "height $height: hash mismatch: stored $stored, computed $computed" >&2
			exit 3
		fi
		prev=$stored
		expect=$((height + 1))
	done
	echo "ok: $expect blocks, head $prev"
}
