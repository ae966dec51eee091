package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/hookbridge/hookbridge/ingest"
	"github.com/hookbridge/hookbridge/schema"
)

const sendUsage = `Usage: hookbridge send [flags]

Signs realistic sample events (schema/testdata/events) with the configured
secret and POSTs them to the bridge, like OpenAI does. Each delivery gets a
unique webhook-id and event id unless --duplicate is given. With --count,
--concurrency and --rate it is also the load generator: it prints a progress
line every second and a summary (status counts, req/s, latency percentiles).

Defaults come from a running "hookbridge serve --dev" or "make up"
(HOOKBRIDGE_DATA_DIR/dev.json), else http://127.0.0.1:8080/webhooks/openai;
the secret from HOOKBRIDGE_SECRETS / OPENAI_WEBHOOK_SECRET, else dev.json's.
With routes (HOOKBRIDGE_ROUTES_<n>_*), --route picks the route whose secret
signs and whose path is posted to (default the first route).

Examples:
  hookbridge send                                   one response.completed
  hookbridge send --all                             one of every known type
  hookbridge send --type batch.completed --count 3
  hookbridge send --count 20000 --concurrency 64    load test
  hookbridge send --count 5 --duplicate             one webhook-id, five times
  hookbridge send --route staging                   to the staging route

Flags:
`

type sendOptions struct {
	url         string
	secret      string
	types       []schema.Type
	count       int
	concurrency int
	rate        float64
	duplicate   bool
	timeout     time.Duration
	quiet       bool
}

func runSend(args []string, io stdio) int {
	fs := flag.NewFlagSet("send", flag.ContinueOnError)
	fs.SetOutput(io.err)
	e, err := parseEnv[sendEnv](io.env)
	if err != nil {
		fmt.Fprintf(io.err, "hookbridge send: %v\n", err)
		return 2
	}
	dev, _ := readDevState(e.DataDir)
	defURL := localURL(e.ListenAddr, e.Path)
	if dev != nil && dev.WebhookURL != "" {
		defURL = dev.WebhookURL
	}
	var o sendOptions
	typ := fs.String("type", string(schema.ResponseCompleted), "event type to send (any routable type; unknown types get a generic body)")
	all := fs.Bool("all", false, "send every catalogue type (each --count times)")
	fs.StringVar(&o.url, "url", defURL, "webhook URL of the bridge")
	fs.StringVar(&o.secret, "secret", "", "signing secret (default: HOOKBRIDGE_SECRETS' first, OPENAI_WEBHOOK_SECRET, or the dev secret)")
	fs.IntVar(&o.count, "count", 1, "deliveries to send (per type with --all)")
	fs.IntVar(&o.concurrency, "concurrency", 1, "parallel connections")
	fs.Float64Var(&o.rate, "rate", 0, "requests per second across all connections (0 = as fast as possible)")
	fs.BoolVar(&o.duplicate, "duplicate", false, "reuse one webhook-id (and body) for every delivery of a type")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "per-request timeout")
	fs.BoolVar(&o.quiet, "quiet", false, "print only the summary")
	route := fs.String("route", io.env[envPrefix+"ROUTES_0_NAME"], "sign with this route's secret and post to its path (HOOKBRIDGE_ROUTES_<n>_NAME; default the first route)")
	fs.Usage = func() { fmt.Fprint(io.err, sendUsage); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(io.err, "hookbridge send: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if o.count < 1 || o.concurrency < 1 || o.rate < 0 || o.timeout <= 0 {
		fmt.Fprintln(io.err, "hookbridge send: --count and --concurrency must be ≥ 1, --rate ≥ 0, --timeout > 0")
		return 2
	}
	if *all {
		o.types = schema.Types()
	} else {
		t := schema.Type(*typ)
		if !t.Routable() {
			fmt.Fprintf(io.err, "hookbridge send: --type %q is not a routable event type (e.g. batch.completed)\n", *typ)
			return 2
		}
		o.types = []schema.Type{t}
	}
	if *route != "" {
		if err := o.useRoute(fs, *route, defURL, io.env); err != nil {
			fmt.Fprintf(io.err, "hookbridge send: %v\n", err)
			return 2
		}
	}
	if o.secret == "" {
		o.secret = e.defaultSecret(io.env, dev)
	}
	if o.secret == "" {
		fmt.Fprintln(io.err, "hookbridge send: no secret: pass --secret, set HOOKBRIDGE_SECRETS, or start the bridge with `make run` (which creates a dev secret)")
		return 2
	}
	secret, err := signingSecret(o.secret)
	if err != nil {
		fmt.Fprintf(io.err, "hookbridge send: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	sum := send(ctx, o, secret, io.out, io.err)
	sum.print(io.out)
	if sum.ok != sum.sent || sum.sent == 0 {
		return 1
	}
	return 0
}

// sendEnv is what send reads of the environment contract: where the bridge
// listens, its secrets, and dev.json's directory.
type sendEnv struct {
	Endpoint
	ListenEnv
	DataEnv
}

// defaultSecret is the secret deliveries are signed with when --secret is not
// given: the first of the bridge's, which during a rotation is the new one;
// else the one a running dev bridge or `make up` uses.
func (e sendEnv) defaultSecret(environ map[string]string, dev *devState) string {
	file, _ := e.readSecretsFile() // unreadable: the bridge would not start either
	list, _ := e.secretList(environ, file)
	if strings.TrimSpace(list) == "" && dev != nil && dev.SecretFile != "" {
		if b, err := os.ReadFile(dev.SecretFile); err == nil {
			list = string(b)
		}
	}
	return firstSecret(list)
}

// firstSecret is the first secret of a list: during a rotation, the new one.
func firstSecret(list string) string {
	f := strings.FieldsFunc(list, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

// useRoute aims at the route: its path on the bridge (defURL's host, which
// follows a dev bridge's moved port) unless --url was given, its first secret
// unless --secret was.
func (o *sendOptions) useRoute(fs *flag.FlagSet, name, defURL string, environ map[string]string) error {
	rc, list, err := commandRoute(environ, name)
	if err != nil {
		return err
	}
	explicitURL := false
	fs.Visit(func(f *flag.Flag) { explicitURL = explicitURL || f.Name == "url" })
	if !explicitURL {
		u, err := url.Parse(defURL)
		if err != nil {
			return err
		}
		u.Path = rc.path
		o.url = u.String()
	}
	if o.secret == "" {
		o.secret = firstSecret(list)
	}
	return nil
}

// localURL is the URL a client on this host reaches a listener on addr at.
func localURL(addr, path string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr + path
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + path
}

// signingSecret parses secret by the same rules as the bridge, so that
// `send` fails fast on a secret the bridge would refuse, and checks that it
// can sign.
func signingSecret(secret string) (ingest.Secret, error) {
	s, err := ingest.ParseSecret(secret)
	if err != nil {
		return ingest.Secret{}, err
	}
	if _, err := ingest.NewSigner(s); err != nil {
		return ingest.Secret{}, err
	}
	return s, nil
}

// delivery is one prepared request: unique ids, body ready to sign.
type delivery struct {
	id   string
	typ  schema.Type
	body []byte
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// sampleBody returns the catalogue sample of t, or a generic event for types
// this build does not know (they are still routed by the bridge).
func sampleBody(t schema.Type) []byte {
	if b, ok := schema.Sample(t); ok {
		return b
	}
	b, _ := json.Marshal(map[string]any{
		"id": "evt_" + randomHex(16), "object": "event", "created_at": time.Now().Unix(),
		"type": t, "data": map[string]string{"id": "obj_" + randomHex(8)},
	})
	return b
}

// uniqueBody gives the sample a fresh event id, so every delivery is a
// distinct event as well as a distinct webhook.
func uniqueBody(sample []byte) []byte {
	ev, err := schema.Parse(sample)
	if err != nil || ev.ID == "" {
		return sample
	}
	return bytes.Replace(sample, []byte(`"`+ev.ID+`"`), []byte(`"evt_`+randomHex(16)+`"`), 1)
}

type sendSummary struct {
	sent, ok  int64
	byStatus  map[string]int64 // "200 published", "503 unavailable", "error: …"
	elapsed   time.Duration
	latencies []time.Duration
}

func (s *sendSummary) print(w io.Writer) {
	rate := 0.0
	if s.elapsed > 0 {
		rate = float64(s.sent) / s.elapsed.Seconds()
	}
	fmt.Fprintf(w, "sent %d in %s: %.0f req/s, %d 2xx, %d other\n", s.sent, s.elapsed.Round(time.Millisecond), rate, s.ok, s.sent-s.ok)
	keys := make([]string, 0, len(s.byStatus))
	for k := range s.byStatus {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  %-28s %d\n", k, s.byStatus[k])
	}
	if len(s.latencies) > 0 {
		slices.Sort(s.latencies)
		p := func(q float64) time.Duration {
			i := int(q * float64(len(s.latencies)-1))
			return s.latencies[i]
		}
		fmt.Fprintf(w, "  latency p50 %s  p90 %s  p99 %s  p99.9 %s  max %s\n",
			fmtDur(p(.5)), fmtDur(p(.9)), fmtDur(p(.99)), fmtDur(p(.999)), fmtDur(s.latencies[len(s.latencies)-1]))
	}
}

func fmtDur(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 2, 64) + "ms"
}

// send runs the deliveries with o.concurrency workers, pacing to o.rate.
func send(ctx context.Context, o sendOptions, secret ingest.Secret, out, errw io.Writer) *sendSummary {
	total := o.count * len(o.types)
	jobs := deliveries(ctx, o)
	client := sendClient(o)
	defer client.CloseIdleConnections()
	r := &sendRun{o: o, start: time.Now(), total: total, verbose: !o.quiet && total <= 50, out: out,
		sum: &sendSummary{byStatus: map[string]int64{}, latencies: make([]time.Duration, 0, total)}}
	var wg sync.WaitGroup
	for range o.concurrency {
		wg.Go(func() { r.work(ctx, newPoster(client, o.url, secret), jobs) })
	}
	done := make(chan struct{})
	if !o.quiet && total > 50 {
		go r.progress(done, errw)
	}
	wg.Wait()
	close(done)
	r.sum.elapsed = time.Since(r.start)
	r.sum.sent, r.sum.ok = r.sent.Load(), r.ok.Load()
	return r.sum
}

// deliveries prepares o's deliveries, count of each type, until ctx ends.
func deliveries(ctx context.Context, o sendOptions) <-chan delivery {
	jobs := make(chan delivery, o.concurrency)
	go func() {
		defer close(jobs)
		for _, t := range o.types {
			sample := sampleBody(t)
			dup := delivery{id: "wh_" + randomHex(16), typ: t, body: uniqueBody(sample)}
			for i := 0; i < o.count; i++ {
				d := dup
				if !o.duplicate {
					d = delivery{id: "wh_" + randomHex(16), typ: t, body: uniqueBody(sample)}
				}
				select {
				case jobs <- d:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return jobs
}

// sendClient keeps one connection per worker and never follows a redirect
// (the bridge never sends one; a proxy that does is worth seeing).
func sendClient(o sendOptions) *http.Client {
	return &http.Client{
		Timeout: o.timeout,
		Transport: &http.Transport{
			MaxIdleConns:        o.concurrency,
			MaxIdleConnsPerHost: o.concurrency,
			MaxConnsPerHost:     o.concurrency,
			IdleConnTimeout:     30 * time.Second,
			DisableCompression:  true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// sendRun is the state the workers of one send share.
type sendRun struct {
	o        sendOptions
	start    time.Time
	total    int
	verbose  bool
	out      io.Writer
	sent, ok atomic.Int64
	slot     atomic.Int64 // paced send slots, for --rate

	mu  sync.Mutex
	sum *sendSummary
}

// work posts deliveries from jobs until it is closed, then adds what it saw
// to the summary.
func (r *sendRun) work(ctx context.Context, p *poster, jobs <-chan delivery) {
	lat := make([]time.Duration, 0, r.total/r.o.concurrency+1)
	for d := range jobs {
		r.pace(ctx)
		t0 := time.Now()
		status, code := p.post(ctx, d)
		lat = append(lat, time.Since(t0))
		r.sent.Add(1)
		if code >= 200 && code < 300 {
			r.ok.Add(1)
		}
		if r.verbose {
			fmt.Fprintf(r.out, "%-28s %-34s %s\n", status, d.typ, d.id)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sum.latencies = append(r.sum.latencies, lat...)
	for k, v := range p.counts {
		r.sum.byStatus[k] += *v
	}
}

// pace waits for the next send slot of --rate, if any.
func (r *sendRun) pace(ctx context.Context) {
	if r.o.rate <= 0 {
		return
	}
	at := r.start.Add(time.Duration(float64(r.slot.Add(1)-1) / r.o.rate * float64(time.Second)))
	if wait := time.Until(at); wait > 0 {
		select {
		case <-time.After(wait):
		case <-ctx.Done():
		}
	}
}

// progress prints a line a second until done is closed.
func (r *sendRun) progress(done <-chan struct{}, w io.Writer) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var last int64
	for {
		select {
		case <-done:
			return
		case <-tick.C:
			n := r.sent.Load()
			fmt.Fprintf(w, "progress: %d/%d sent, %d 2xx, %d req/s\n", n, r.total, r.ok.Load(), n-last)
			last = n
		}
	}
}

// poster sends deliveries for one worker, reusing what it can between
// requests: the HMAC, the timestamp string (per second), the response buffer
// and the "<status> <code word>" strings, which it counts as it goes.
type poster struct {
	c      *http.Client
	url    string
	sig    *ingest.Signer
	ua     []string
	ct     []string
	tsUnix int64
	ts     string
	buf    [512]byte
	key    []byte            // scratch for the status string
	counts map[string]*int64 // status string → count
	names  map[*int64]string // and back, to return the string
}

var hdrContentJSON = []string{"application/json"}

func newPoster(c *http.Client, url string, secret ingest.Secret) *poster {
	sig, _ := ingest.NewSigner(secret) // checked by signingSecret
	return &poster{c: c, url: url, sig: sig, ua: []string{"hookbridge-send/" + version},
		ct: hdrContentJSON, tsUnix: -1, counts: map[string]*int64{}, names: map[*int64]string{}}
}

// post signs d with a fresh timestamp (as OpenAI does on every attempt),
// counts its outcome and returns "<status> <code word>" and the HTTP status
// (0 on transport errors).
func (p *poster) post(ctx context.Context, d delivery) (string, int) {
	errStatus, code := p.do(ctx, d) // fills p.key unless it failed
	if errStatus != "" {
		p.key = append(p.key[:0], errStatus...)
	}
	return p.count(), code
}

// count adds one to the status in p.key and returns it as a string,
// allocated only the first time it is seen.
func (p *poster) count() string {
	if n := p.counts[string(p.key)]; n != nil { // no allocation for the lookup
		*n++
		return p.names[n]
	}
	k := string(p.key)
	n := new(int64)
	*n = 1
	p.counts[k], p.names[n] = n, k
	return k
}

func (p *poster) do(ctx context.Context, d delivery) (string, int) {
	if now := time.Now().Unix(); now != p.tsUnix {
		p.tsUnix, p.ts = now, strconv.FormatInt(now, 10)
	}
	ts := p.ts
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(d.body))
	if err != nil {
		return "error: bad request", 0
	}
	// Canonical keys set directly: Header.Set would canonicalize each key
	// (and allocate for the lower-case webhook-* spellings) per request.
	req.Header = http.Header{
		"Content-Type":      p.ct,
		"User-Agent":        p.ua,
		"Webhook-Id":        {d.id},
		"Webhook-Timestamp": {ts},
		"Webhook-Signature": {p.sig.Sign(d.id, ts, d.body)},
	}
	resp, err := p.c.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "Client.Timeout") {
			return "error: timeout", 0
		}
		return "error: connection", 0
	}
	defer resp.Body.Close()
	// Read to EOF (bounded, as before) so the connection is reused.
	n, err := io.ReadFull(resp.Body, p.buf[:])
	b := p.buf[:n]
	if err == nil {
		rest, _ := io.ReadAll(io.LimitReader(resp.Body, 4096-int64(n)))
		b = append(b[:n:n], rest...)
	}
	p.key = strconv.AppendInt(p.key[:0], int64(resp.StatusCode), 10)
	p.key = append(p.key, ' ')
	if w, ok := codeWord(b); ok {
		p.key = append(p.key, w...)
	} else {
		var r struct {
			Status string `json:"status"`
			Error  string `json:"error"`
		}
		_ = json.Unmarshal(b, &r)
		p.key = append(p.key, r.Status+r.Error...)
	}
	if len(p.key) == len(strconv.Itoa(resp.StatusCode))+1 {
		p.key = append(p.key, http.StatusText(resp.StatusCode)...)
	}
	return "", resp.StatusCode
}

// codeWord returns the code word of the bridge's own replies, {"status":"w"}
// or {"error":"w",…}, without decoding JSON; ok is false for anything else
// (then the caller decodes it as JSON).
func codeWord(b []byte) (word []byte, ok bool) {
	var rest []byte
	switch {
	case bytes.HasPrefix(b, []byte(`{"status":"`)):
		rest = b[len(`{"status":"`):]
	case bytes.HasPrefix(b, []byte(`{"error":"`)):
		rest = b[len(`{"error":"`):]
	default:
		return nil, false
	}
	i := bytes.IndexByte(rest, '"')
	if i < 0 || bytes.IndexByte(rest[:i], '\\') >= 0 {
		return nil, false
	}
	word, after := rest[:i], rest[i+1:]
	for _, c := range word {
		if c >= 0x80 {
			return nil, false
		}
	}
	// Exactly the bridge's shapes, so that no other "status" or "error"
	// member can follow: {"status":"w"} or {"error":"w","message":"…"}
	// (or "status" with a message, as for dead letters).
	if m, isErr := bytes.CutPrefix(after, []byte(`,"message":"`)); isErr {
		end := -1
		for j := 0; j < len(m); j++ {
			if m[j] == '\\' {
				j++
			} else if m[j] == '"' {
				end = j + 1
				break
			}
		}
		if end < 0 {
			return nil, false
		}
		after = m[end:]
	}
	if len(bytes.TrimRight(after, " \t\r\n")) == 1 && after[0] == '}' {
		return word, true
	}
	return nil, false
}
