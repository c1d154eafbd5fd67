#!/usr/bin/env bash
# Prints the vendorHash flake.nix needs: the NAR hash of `go mod vendor`'s
# output, which is what buildGoModule's vendor derivation produces.
#
#   bash testdata/nix/vendor-hash.sh          print it
#   bash testdata/nix/vendor-hash.sh --write  also put it into flake.nix
#
# Needs go and nix-hash (Debian: apt-get install nix-bin); works offline
# when the module cache holds go.mod's dependencies.
set -euo pipefail

cd "$(dirname "$0")/../.."

write=false
case "${1:-}" in
"") ;;
--write) write=true ;;
*)
	echo "usage: $0 [--write]" >&2
	exit 2
	;;
esac

command -v nix-hash >/dev/null || {
	echo "vendor-hash: nix-hash not found (apt-get install nix-bin)" >&2
	exit 1
}

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# The vendor derivation runs with GOFLAGS=-mod=mod and no GOWORK.
GOFLAGS=-mod=mod GOWORK=off go mod vendor -o "$tmp/vendor"
hex="$(nix-hash --type sha256 "$tmp/vendor")"
hash="sha256-$(printf %s "$hex" | tr a-f A-F | basenc --base16 -d | base64 -w0)"

if $write; then
	sed -i -E "s|^( *vendorHash = )\"[^\"]*\";|\1\"$hash\";|" flake.nix
	grep -q "vendorHash = \"$hash\";" flake.nix || {
		echo "vendor-hash: no 'vendorHash = \"...\";' line in flake.nix to update" >&2
		exit 1
	}
fi
echo "$hash"
