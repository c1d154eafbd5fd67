// Package chain keeps the snapshot hash chain: an append-only sequence of
// blocks in one SQLite file, each block's SHA-256 hash covering its canonical
// encoding and the previous block's hash, and verifies it.
//
// It owns the database schema and the block encoding, which is stable: a
// script using only sqlite3 and sha256sum recomputes every hash (see
// testdata/chain/verify-chain.sh). It must not print, read flags or
// configuration, or know how snapshots are taken.
package chain
