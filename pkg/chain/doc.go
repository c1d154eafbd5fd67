// Package chain keeps the snapshot hash chain: an append-only sequence of
// blocks in one SQLite file, each block's SHA-256 hash covering its canonical
// encoding and the previous block's hash, and verifies it.
//
// Over the same blocks it keeps an RFC 6962 Merkle tree (hashed by
// golang.org/x/mod/sumdb/tlog, stored in the same file, written in the
// block's transaction), signs checkpoints of the tree with Ed25519 note keys
// (golang.org/x/mod/sumdb/note, in the C2SP tlog-checkpoint form), verifies
// the chain in full or incrementally from a trusted checkpoint, and makes
// and checks offline inclusion proofs. A checkpoint kept outside the
// database is what lets verification notice a database that was rewritten
// or replaced by an older copy.
//
// It owns the database schema and the block encoding, which is stable: a
// script using only sqlite3 and sha256sum recomputes every hash (see
// testdata/chain/verify-chain.sh). It must not print, read flags or
// configuration, know how snapshots are taken, or let a signing key reach an
// error message or a log line.
package chain
