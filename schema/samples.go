package schema

import "embed"

// The samples are realistic bodies, one per catalogue type, exactly as OpenAI
// sends them (compact JSON, no trailing newline). `hookbridge send` signs and
// posts them, and they document each type's data.
//
//go:embed testdata/events/*.json
var samples embed.FS

// Sample returns a realistic webhook body for a known type t, and false for
// any other type. The bytes are a fresh copy the caller may modify.
func Sample(t Type) ([]byte, bool) {
	if !t.Known() {
		return nil, false // also keeps arbitrary strings out of the file lookup
	}
	b, err := samples.ReadFile("testdata/events/" + string(t) + ".json")
	if err != nil {
		return nil, false
	}
	return b, true
}
