package publish

import "strings"

// SubjectMatches reports whether the NATS subject filter matches subject,
// token by token: "*" matches any one token and a final ">" one or more.
// subject may itself be a filter: then the answer is whether filter matches
// every subject it matches. Kafka topic names (<prefix>.<type>) follow the
// same rule, for hookbridge tail --type.
func SubjectMatches(filter, subject string) bool {
	f, s := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, ft := range f {
		if ft == ">" {
			return i < len(s)
		}
		if i >= len(s) || s[i] == ">" {
			return false
		}
		if ft != "*" && (ft != s[i] || s[i] == "*") {
			return false
		}
	}
	return len(f) == len(s)
}
