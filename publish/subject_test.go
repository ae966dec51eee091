package publish

import "testing"

func TestSubjectMatches(t *testing.T) {
	for _, tt := range []struct {
		filter, subject string
		want            bool
	}{
		{"openai.>", "openai.batch.completed", true},
		{"openai.>", "openai", false},
		{"openai.batch.*", "openai.batch.completed", true},
		{"openai.batch.*", "openai.batch.completed.extra", false},
		{"openai.*.completed", "openai.batch.completed", true},
		{"openai.*.completed", "openai.batch.failed", false},
		{"openai.batch.completed", "openai.batch.completed", true},
		{"openai.batch.completed", "openai.batch", false},
		{"openai.batch", "openai.batch.completed", false},
		{"other.>", "openai.batch.completed", false},
		// A filter as the subject: does filter cover all it matches?
		{"openai.>", "openai.>", true},
		{"openai.>", "openai.*", true},
		{"openai.*", "openai.>", false},
		{"openai.batch.>", "openai.>", false},
		{"acme.*.>", "acme.prod.>", true},
		{"acme.prod.>", "acme.*.>", false},
	} {
		if got := SubjectMatches(tt.filter, tt.subject); got != tt.want {
			t.Errorf("SubjectMatches(%q, %q) = %v, want %v", tt.filter, tt.subject, got, tt.want)
		}
	}
}
