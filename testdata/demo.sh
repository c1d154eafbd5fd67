#!/usr/bin/env bash
# make demo: build ghostbridge, snapshot a scratch BTRFS subvolume every
# second for about ten seconds while files change, then show the snapshots,
# the chain and its verification. Everything it creates lives under one
# temporary directory and is removed on exit. Needs root and loop devices.
set -euo pipefail

die2() { printf 'demo: %s\n' "$*" >&2; exit 2; }

if [[ "$(id -u)" -ne 0 ]]; then
	die2 "needs root (it mounts a scratch BTRFS image on a loop device); run: sudo make demo"
fi
if [[ ! -e /dev/loop-control ]] && ! losetup --find >/dev/null 2>&1; then
	die2 "no loop devices on this machine (/dev/loop-control missing); cannot mount a scratch BTRFS"
fi
command -v go >/dev/null 2>&1 || die2 "the go command is needed to build ghostbridge"

if [[ -t 1 ]]; then
	bold=$'\e[1m' dim=$'\e[2m' reset=$'\e[0m'
else
	bold='' dim='' reset=''
fi
section() { printf '\n%s==> %s%s\n' "$bold" "$*" "$reset"; }
note() { printf '%s    %s%s\n' "$dim" "$*" "$reset"; }

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tmp="$(mktemp -d -t ghostbridge-demo.XXXXXX)"
img="$tmp/scratch.img"
mnt="$tmp/mnt"
src="$mnt/@data"
snaps="$mnt/.snapshots"
db="$tmp/chain.db"
loopdev=''
run_pid=''
churn_pid=''

cleanup() {
	local rc=$?
	set +e
	[[ -n "$churn_pid" ]] && kill "$churn_pid" 2>/dev/null && wait "$churn_pid" 2>/dev/null
	[[ -n "$run_pid" ]] && kill -KILL "$run_pid" 2>/dev/null && wait "$run_pid" 2>/dev/null
	if mountpoint -q "$mnt" 2>/dev/null; then
		for _ in 1 2 3 4 5; do
			umount "$mnt" 2>/dev/null && break
			sleep 0.2
		done
		mountpoint -q "$mnt" && umount -l "$mnt"
	fi
	[[ -n "$loopdev" ]] && losetup -d "$loopdev" 2>/dev/null
	rm -rf -- "$tmp"
	section "Cleaned up"
	note "unmounted $mnt, detached ${loopdev:-no loop device}, removed $tmp"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

section "Checking tools"
missing=()
command -v mkfs.btrfs >/dev/null 2>&1 || missing+=(btrfs-progs)
command -v sqlite3 >/dev/null 2>&1 || missing+=(sqlite3)
if ((${#missing[@]})); then
	command -v apt-get >/dev/null 2>&1 || die2 "missing ${missing[*]} and no apt-get to install them"
	note "installing ${missing[*]} with apt-get"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
note "mkfs.btrfs, losetup, sqlite3: present"

section "Building ghostbridge"
(cd "$root" && CGO_ENABLED=0 go build -o "$tmp/ghostbridge" ./cmd/ghostbridge)
gb=("$tmp/ghostbridge" --config "$tmp/empty.toml" --db "$db")
: >"$tmp/empty.toml" # keep a host's /etc/ghostbridge config out of the demo
note "$tmp/ghostbridge ($("$tmp/ghostbridge" version 2>/dev/null | head -n 1))"

section "Creating a scratch 1G BTRFS on a loop device"
truncate -s 1G "$img"
mkfs.btrfs -q "$img" >"$tmp/mkfs.log" 2>&1 || { cat "$tmp/mkfs.log" >&2; exit 1; }
loopdev="$(losetup --find --show "$img")"
mkdir -p "$mnt"
mount -o noatime,compress=zstd:3 "$loopdev" "$mnt"
btrfs -q subvolume create "$src"
mkdir -p "$src/etc" "$src/notes"
cp /etc/os-release /etc/hostname "$src/etc/" 2>/dev/null || true
for i in 1 2 3 4 5; do
	printf 'note %d written at %s\n' "$i" "$(date -u +%FT%TZ)" >"$src/notes/note-$i.txt"
done
head -c 4M /dev/urandom >"$src/blob.bin"
note "$loopdev mounted at $mnt; source subvolume $src with $(find "$src" -type f | wc -l) files"

section "Running 'ghostbridge snap run' for about ten seconds while files change"
note "ghostbridge --db $db snap run --source data=$src --dir $snaps --interval 1s --keep 4s"
(
	i=0
	while :; do
		printf '%s change %d\n' "$(date -u +%T.%N)" "$i" >>"$src/notes/changes.log"
		head -c 64K /dev/urandom >"$src/churn-$((i % 4)).bin"
		i=$((i + 1))
		sleep 0.3
	done
) &
churn_pid=$!
"${gb[@]}" --log-level debug snap run \
	--source "data=$src" --dir "$snaps" --interval 1s --keep 4s 2>"$tmp/run.log" &
run_pid=$!
for s in 1 2 3 4 5 6 7 8 9 10; do
	sleep 1
	if ! kill -0 "$run_pid" 2>/dev/null; then
		cat "$tmp/run.log" >&2
		wait "$run_pid" || true
		run_pid=''
		printf 'demo: snap run stopped early\n' >&2
		exit 1
	fi
	if [[ -t 1 ]]; then
		printf '\r    %2ds: %d snapshots on disk' "$s" "$(find "$snaps/data" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)"
	fi
done
[[ -t 1 ]] && printf '\n'
note "after 10s: $(find "$snaps/data" -mindepth 1 -maxdepth 1 | wc -l) snapshots on disk (keep 4s: older ones deleted)"
kill "$churn_pid" && wait "$churn_pid" 2>/dev/null || true
churn_pid=''

section "ghostbridge diag --only snapshots,chain,storage (while snap run is running)"
note "the same sources, directory and retention, given through GHOSTBRIDGE_SNAP_* variables"
drc=0
GHOSTBRIDGE_SNAP_SOURCES="data=$src" GHOSTBRIDGE_SNAP_DIR="$snaps" GHOSTBRIDGE_SNAP_INTERVAL=1s GHOSTBRIDGE_SNAP_KEEP=4s \
	"${gb[@]}" --no-color diag --only snapshots,chain,storage || drc=$?
note "diag exited with status $drc (0 ok, 1 warning, 2 critical, 3 unknown)"

section "Stopping it with SIGTERM (finishes the tick in hand, exits 0)"
kill -TERM "$run_pid"
rc=0
wait "$run_pid" || rc=$?
run_pid=''
note "snap run exited with status $rc"
note "its log ($(wc -l <"$tmp/run.log") lines), last 6:"
tail -n 6 "$tmp/run.log" | sed 's/^/      /'
((rc == 0)) || exit 1

section "ghostbridge snap list"
"${gb[@]}" snap list

section "ghostbridge chain log -n 20"
"${gb[@]}" chain log -n 20

section "ghostbridge chain verify"
"${gb[@]}" chain verify

section "What is on disk"
note "ls $snaps/data"
ls -1 "$snaps/data" | sed 's/^/      /'
