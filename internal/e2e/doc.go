// Package e2e measures the built ghostbridge binary against the baselines
// the project promises to beat: the hand-written shell snapshot loop in
// testdata/bench, and the memory bound of a long `snap run`.
//
// It holds benchmarks only (run by `make bench`); it has no production
// code and nothing may import it.
package e2e
