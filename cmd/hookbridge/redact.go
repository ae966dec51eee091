package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/url"
	"sort"
	"strings"
)

// Credentials never reach a log line. Two layers:
//   - the start-up configuration shows every URL setting with its userinfo
//     replaced (redactURLList), and credential variables as [REDACTED];
//   - every log line passes through redactWriter, which replaces the userinfo
//     of any URL in it and every configured credential, whatever printed it
//     (nats.go, go-redis and kafka-go errors can echo a URL).

// redactedUserinfo replaces a URL's userinfo ("user:password@" or a NATS
// token "token@").
const redactedUserinfo = "REDACTED"

// urlListVars are the settings that hold URLs or host lists, in which an
// element may carry userinfo with or without a scheme (nats.go accepts
// "user:pass@host:4222").
var urlListVars = []string{"NATS_URL", "REDIS_URL", "KAFKA_BROKERS"}

// credentialVars hold a credential as a whole.
var credentialVars = []string{"NATS_PASSWORD", "NATS_TOKEN", "KAFKA_SASL_PASSWORD", "EMBEDDED_NATS_TOKEN"}

// minCredentialLen is the shortest credential replaced wherever it appears
// in a line: shorter ones would garble every line that happens to contain
// them. URLs are redacted by their structure whatever the length.
const minCredentialLen = 4

// redactURLList replaces the userinfo of every comma-separated element of
// list: "nats://u:p@h:4222,p@h2:4222" → "nats://REDACTED@h:4222,REDACTED@h2:4222".
func redactURLList(list string) string {
	parts := strings.Split(list, ",")
	for i, p := range parts {
		if ui, start, ok := userinfo(p); ok {
			parts[i] = p[:start] + redactedUserinfo + p[start+len(ui):]
		}
	}
	return strings.Join(parts, ",")
}

// userinfo finds the userinfo of one URL or host list element: what lies
// between the scheme's "://" (if any) and the element's last '@'. A password
// may hold '/' or '@' unescaped, so the last '@' of the element is taken,
// not the first after the authority.
func userinfo(elem string) (ui string, start int, ok bool) {
	if i := strings.Index(elem, "://"); i >= 0 {
		start = i + 3
	}
	at := strings.LastIndexByte(elem[start:], '@')
	if at < 0 {
		return "", 0, false
	}
	return elem[start : start+at], start, true
}

// credentials returns the texts that must never appear in a log line, from
// the environment as given (so they are known even when the configuration
// does not load): credential variables, and the userinfo and password of
// every element of the URL settings; each as written, percent-decoded and
// as JSON escapes it. Longest first, so that a password inside a longer
// userinfo goes with it.
func credentials(environ map[string]string) []string {
	seen := map[string]bool{}
	add := func(s string) {
		forms := []string{s}
		if d, err := url.PathUnescape(s); err == nil {
			forms = append(forms, d)
		}
		// url.Parse cuts an unescaped password at '/', '?' or '#', and its
		// errors show what came before.
		for _, f := range forms {
			if i := strings.IndexAny(f, "/?#"); i > 0 {
				forms = append(forms, f[:i])
			}
		}
		for _, f := range forms {
			forms = append(forms, jsonEscaped(f))
		}
		for _, f := range forms {
			if len(f) >= minCredentialLen {
				seen[f] = true
			}
		}
	}
	for _, name := range credentialVars {
		add(environ[envPrefix+name])
	}
	for _, c := range otelCredentials(environ) {
		add(c)
	}
	for _, name := range urlListVars {
		for _, p := range strings.Split(environ[envPrefix+name], ",") {
			ui, _, ok := userinfo(strings.TrimSpace(p))
			if !ok {
				continue
			}
			add(ui) // user:password, or a NATS token
			if _, pw, ok := strings.Cut(ui, ":"); ok {
				add(pw)
			}
		}
	}
	out := make([]string, 0, len(seen))
	for s := range seen {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool {
		if len(out[i]) != len(out[j]) {
			return len(out[i]) > len(out[j])
		}
		return out[i] < out[j]
	})
	return out
}

// jsonEscaped is s as it appears inside a JSON string in a log line
// (zerolog escapes quotes, backslashes and control characters, not HTML).
func jsonEscaped(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	q := bytes.TrimSpace(b.Bytes())
	return string(q[1 : len(q)-1])
}

// redactText returns s with the userinfo of every URL in it replaced, then
// every credential.
func redactText(s string, creds []string) string {
	return string(redactBytes([]byte(s), creds))
}

// urlEnd is where an authority ends inside free text: the path, query or
// fragment, whitespace, a quote, or a separator of lists and log fields.
func urlEnd(c byte) bool {
	switch c {
	case '/', '?', '#', ' ', '\t', '\n', '\r', '"', '\'', ',', ';', '<', '>', '\\', ')', ']', '}':
		return true
	}
	return false
}

// redactBytes replaces the credentials first (known exactly, so also where
// a URL was cut in an error message), then the userinfo of every URL left.
func redactBytes(p []byte, creds []string) []byte {
	for _, c := range creds {
		if bytes.Contains(p, []byte(c)) {
			p = bytes.ReplaceAll(p, []byte(c), []byte(redactedUserinfo))
		}
	}
	if !bytes.Contains(p, []byte("://")) {
		return p
	}
	var out []byte
	rest := p
	for {
		i := bytes.Index(rest, []byte("://"))
		if i < 0 {
			break
		}
		start := i + 3
		end, at := start, -1
		if end < len(rest) && rest[end] == '[' { // an IPv6 literal
			if j := bytes.IndexByte(rest[end:], ']'); j >= 0 {
				end += j + 1
			}
		}
		for end < len(rest) && !urlEnd(rest[end]) {
			if rest[end] == '@' {
				at = end
			}
			end++
		}
		out = append(out, rest[:start]...)
		switch {
		case at >= 0:
			out = append(out, redactedUserinfo...)
			out = append(out, rest[at:end]...)
		default:
			out = append(out, cutPassword(rest[start:end])...)
		}
		rest = rest[end:]
	}
	return append(out, rest...)
}

// cutPassword handles an authority without '@' that still holds a password:
// a URL whose unescaped password contains '#', '?' or '/' is cut there by
// url.Parse, and its error message shows "scheme://user:pass". A port is
// digits; anything else after the last ':' outside brackets is replaced.
func cutPassword(auth []byte) []byte {
	c := bytes.LastIndexByte(auth, ':')
	if c < 0 || c < bytes.LastIndexByte(auth, ']') {
		return auth
	}
	for _, b := range auth[c+1:] {
		if b < '0' || b > '9' {
			return append(append([]byte(nil), auth[:c+1]...), redactedUserinfo...)
		}
	}
	return auth
}

// stdioWriter is io.Writer where a parameter named io hides the package.
type stdioWriter = interface{ Write([]byte) (int, error) }

// redactWriter passes each write (zerolog writes one line per call) through
// redactBytes. Lines with nothing to redact, nearly all, are written as they
// are.
type redactWriter struct {
	w     io.Writer
	creds []string
}

func (r redactWriter) Write(p []byte) (int, error) {
	if !r.needed(p) {
		return r.w.Write(p)
	}
	if _, err := r.w.Write(redactBytes(bytes.Clone(p), r.creds)); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (r redactWriter) needed(p []byte) bool {
	if bytes.Contains(p, []byte("://")) {
		return true
	}
	for _, c := range r.creds {
		if bytes.Contains(p, []byte(c)) {
			return true
		}
	}
	return false
}
