package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hookbridge/hookbridge/ingest"
	"github.com/hookbridge/hookbridge/schema"
)

const verifyUsage = `Usage: hookbridge verify [flags] [< body]

Checks a captured webhook delivery offline, with exactly the rules the bridge
(and openai-go) applies: the webhook-id, webhook-timestamp and
webhook-signature headers, the raw body bytes, the timestamp tolerance and every
configured secret. It prints one line on stdout:

  valid: type=<type> id=<event id> webhook-id=<id> secret=#<n>
  invalid: <reason>: <message>

and exits 0 (valid), 1 (invalid) or 2 (usage error). A valid delivery whose
body is not a routable event is still valid (exit 0): the bridge would accept
and dead-letter it, and the line says so. Secrets and signatures are never
printed.

Secrets: --secret, else what "hookbridge serve" would use: HOOKBRIDGE_SECRETS
(or OPENAI_WEBHOOK_SECRET) plus the contents of HOOKBRIDGE_SECRETS_FILE. Each
may hold several secrets separated by spaces or commas; secret=#<n> says which
one matched. With routes (HOOKBRIDGE_ROUTES_<n>_*), the secrets of the route
--route names (default the first route).

The body is read as raw bytes: nothing is added or trimmed, so save it exactly
as received (a trailing newline added by an editor makes it invalid). A
captured delivery is usually older than the tolerance: pass its timestamp to
--now to check it as of then.

Example:
  hookbridge verify --secret "$OPENAI_WEBHOOK_SECRET" \
    -H 'webhook-id: wh_685c059ae39c8190af8c71ed1022a24d' \
    -H 'webhook-timestamp: 1750861210' \
    -H "webhook-signature: $SIG" \
    --now 1750861210 --body-file delivery.json

Flags:
`

// verifyList collects a repeatable flag. It never validates in Set, and
// String shows nothing: the flag package would echo a rejected value, and
// these are secrets and signatures.
type verifyList []string

func (m *verifyList) String() string     { return "" }
func (m *verifyList) Set(v string) error { *m = append(*m, v); return nil }

func runVerify(args []string, io stdio) int {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	fs.SetOutput(io.err)
	var secrets, headers verifyList
	fs.Var(&secrets, "secret", "signing `secret` (whsec_…, raw, or whpk_…); repeatable, each may be a space/comma list\n(default: HOOKBRIDGE_SECRETS or OPENAI_WEBHOOK_SECRET, plus HOOKBRIDGE_SECRETS_FILE)")
	fs.Var(&headers, "H", "request header as `'name: value'` (repeatable; names are case-insensitive, the first of a name wins)")
	bodyFile := fs.String("body-file", "", "`file` holding the raw request body (default: stdin; - is stdin)")
	nowText := fs.String("now", "", "check as of this `unix` time in seconds (default: the clock)")
	tolerance := fs.Duration("tolerance", ingest.DefaultTolerance, "how far webhook-timestamp may be from now, either way")
	route := fs.String("route", io.env[envPrefix+"ROUTES_0_NAME"], "without --secret: the secrets of this route (HOOKBRIDGE_ROUTES_<n>_NAME; default the first route)")
	fs.Usage = func() { fmt.Fprint(io.err, verifyUsage); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(io.err, "hookbridge verify: "+format+"\n", a...)
		return 2
	}
	if fs.NArg() > 0 {
		return usageErr("unexpected argument %q (the body comes from --body-file or stdin)", fs.Arg(0))
	}

	list, parsed, err := verifySecretsOf(secrets, *route, io.env)
	if err != nil {
		return usageErr("%v", err)
	}

	h, err := headerFlags(headers)
	if err != nil {
		return usageErr("%v", err)
	}

	opts := []ingest.VerifierOption{ingest.WithTolerance(*tolerance)}
	if *tolerance < 0 {
		return usageErr("--tolerance must not be negative")
	}
	if *nowText != "" {
		now, err := strconv.ParseInt(*nowText, 10, 64)
		if err != nil {
			return usageErr("--now %q: expected Unix seconds", *nowText)
		}
		opts = append(opts, ingest.WithClock(func() time.Time { return time.Unix(now, 0) }))
	}
	v, err := ingest.NewVerifier(parsed, opts...)
	if err != nil {
		return usageErr("%v", err)
	}

	body, err := readBody(*bodyFile, io.in)
	if err != nil {
		return usageErr("reading the body: %v", err)
	}

	n, err := v.VerifyIndex(body, h)
	if err != nil {
		var ve *ingest.VerifyError
		if !errors.As(err, &ve) {
			return usageErr("%v", err)
		}
		fmt.Fprintf(io.out, "invalid: %s: %s\n", ve.Reason, ve.Message)
		verifyHint(io.err, ve, h, list, *nowText)
		return 1
	}

	printValid(io.out, body, h, n)
	return 0
}

// headerFlags turns the -H flags into headers.
func headerFlags(flags []string) (ingest.Headers, error) {
	kv := make([]string, 0, 2*len(flags))
	for i, h := range flags {
		name, value, ok := strings.Cut(h, ":")
		name = strings.TrimSpace(name)
		// The value may be a signature: the message names the flag, not it.
		if !ok || name == "" || strings.ContainsFunc(name, unicode.IsSpace) {
			return nil, fmt.Errorf("-H #%d: expected 'name: value'", i+1)
		}
		// As net/http does on the wire: surrounding blanks are not the value.
		kv = append(kv, name, strings.Trim(value, " \t"))
	}
	return ingest.HeaderPairs(kv...), nil
}

// printValid prints the line for a valid delivery: what the bridge would do
// with it, and which secret (by position) matched.
func printValid(w io.Writer, body []byte, h ingest.Headers, secret int) {
	wid := printable(h.Get(ingest.HeaderID))
	ev, err := schema.Parse(body)
	if err != nil {
		reason := "unknown"
		var pe *schema.ParseError
		if errors.As(err, &pe) {
			reason = pe.Reason
		}
		fmt.Fprintf(w, "valid: webhook-id=%s secret=#%d, but the body is not a routable event and would be dead-lettered: %s (%v)\n", wid, secret+1, reason, err)
		return
	}
	fmt.Fprintf(w, "valid: type=%s id=%s webhook-id=%s secret=#%d\n", ev.Type, printable(ev.ID), wid, secret+1)
}

// readBody reads the body verbatim from path, or from stdin for "" or "-".
func readBody(path string, stdin io.Reader) ([]byte, error) {
	if path == "" || path == "-" {
		return io.ReadAll(stdin)
	}
	return os.ReadFile(path)
}

// verifySecretsOf is verifySecrets, or, without --secret flags, the secrets
// of the route named route when it is set.
func verifySecretsOf(flags []string, route string, environ map[string]string) (string, []ingest.Secret, error) {
	if len(flags) > 0 || route == "" {
		return verifySecrets(flags, environ)
	}
	rc, list, err := commandRoute(environ, route)
	if err != nil {
		return "", nil, err
	}
	s, err := ingest.ParseSecrets(list)
	if err != nil {
		return "", nil, fmt.Errorf("%sSECRETS:\n%w", rc.env, err)
	}
	if len(s) == 0 {
		return "", nil, fmt.Errorf("no secret: route %s has none (%sSECRETS, %sSECRETS_FILE)", route, rc.env, rc.env)
	}
	return list, s, nil
}

// verifySecrets returns the --secret flags' secrets, else those serve would
// use, and their text (for hints).
func verifySecrets(flags []string, environ map[string]string) (string, []ingest.Secret, error) {
	if len(flags) > 0 {
		list := strings.Join(flags, " ")
		s, err := ingest.ParseSecrets(list)
		if err != nil {
			return "", nil, fmt.Errorf("--secret:\n%w", err)
		}
		return list, s, nil
	}
	e, err := parseEnv[Endpoint](environ)
	if err != nil {
		return "", nil, err
	}
	file, err := e.readSecretsFile()
	if err != nil {
		return "", nil, err
	}
	list, _ := e.secretList(environ, file)
	s, err := e.parseSecrets(environ, file)
	if err == nil && len(s) == 0 {
		err = errors.New("no secret: give --secret, or set HOOKBRIDGE_SECRETS, OPENAI_WEBHOOK_SECRET or HOOKBRIDGE_SECRETS_FILE")
	}
	return list, s, err
}

// verifyHint tells a human what usually causes each failure, on stderr so
// that stdout stays one parseable line.
func verifyHint(w io.Writer, ve *ingest.VerifyError, h ingest.Headers, secrets, nowText string) {
	switch ve {
	case ingest.ErrMissingSignature, ingest.ErrMissingTimestamp, ingest.ErrMissingID:
		fmt.Fprintln(w, "hint: pass each header as -H 'name: value'; an empty value counts as missing")
	case ingest.ErrBadTimestamp:
		fmt.Fprintln(w, "hint: webhook-timestamp must be whole Unix seconds, with no spaces")
	case ingest.ErrTooOld, ingest.ErrTooNew:
		if nowText == "" {
			ts := printable(h.Get(ingest.HeaderTimestamp))
			fmt.Fprintf(w, "hint: to check a captured delivery as of when it was sent, add --now %s\n", ts)
		}
	case ingest.ErrNoMatch:
		fmt.Fprintln(w, "hint: the body must be byte-for-byte what was received (no added newline, no re-formatted JSON)")
		for i, s := range strings.FieldsFunc(secrets, func(r rune) bool { return r == ',' || unicode.IsSpace(r) }) {
			if !strings.HasPrefix(s, "whsec_") && !strings.HasPrefix(s, "whpk_") {
				fmt.Fprintf(w, "hint: secret #%d has no whsec_ prefix, so its text is used as the key as is (not base64-decoded)\n", i+1)
			}
		}
	}
}

// printable quotes a header or JSON value only when it would garble the line.
func printable(s string) string {
	if s != "" && utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) || r == ' ' }) {
		return s
	}
	return strconv.Quote(s)
}
