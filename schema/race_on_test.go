//go:build race

package schema

// raceEnabled: the race detector adds allocations of its own, so allocation
// counts are asserted only in the non-race run (`make test` does both).
const raceEnabled = true
