package integration

// What an unauthenticated client may cost (and what a default exposes),
// against a running `hookbridge serve`: bodies declared but never sent, the
// v1a candidate flood, aborted readiness probes, credentials in URLs, and the
// embedded broker beyond loopback.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hookbridge/hookbridge/schema"
)

// metricValue reads one unlabelled sample from the bridge's /metrics.
func metricValue(t *testing.T, b *bridge, name string) float64 {
	t.Helper()
	resp, err := http.Get(b.AdminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			return f
		}
	}
	t.Fatalf("/metrics has no %s", name)
	return 0
}

// waitMetric polls name until ok accepts its value, bounded by within.
func waitMetric(t *testing.T, b *bridge, name string, ok func(float64) bool, want string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		v := metricValue(t, b, name)
		if ok(v) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v after %s, want %s", name, v, within, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

const (
	floodConns    = 300
	floodDeclared = 1 << 20
	floodSent     = 16
	// The bound the heap may grow by while floodConns requests each declare
	// floodDeclared bytes and send floodSent: before the body buffer grew
	// with the bytes received, this flood took it up by 300–640 MB.
	floodHeapBound = 64 << 20
)

// TestDeclaredButUnsentBodies holds floodConns requests that declare a
// megabyte and send 16 bytes, over HTTP/1.1 and over HTTP/2 with TLS, and
// reads the bridge's heap from /metrics while they are all in the handler.
func TestDeclaredButUnsentBodies(t *testing.T) {
	for _, proto := range []string{"HTTP/1.1", "HTTP/2+TLS"} {
		t.Run(proto, func(t *testing.T) {
			// The embedded broker (what the image and `make run` use) keeps
			// the 1 MiB body limit: its max_payload follows it.
			env := map[string]string{
				"HOOKBRIDGE_DATA_DIR":           t.TempDir(),
				"HOOKBRIDGE_EMBEDDED_NATS_ADDR": "127.0.0.1:0",
				"HOOKBRIDGE_READ_TIMEOUT":       "30s", // the flood stays while measured
			}
			var roots *x509.CertPool
			if proto != "HTTP/1.1" {
				cert, crt, key := opsSelfSigned(t, t.TempDir(), 1)
				env["HOOKBRIDGE_TLS_CERT_FILE"], env["HOOKBRIDGE_TLS_KEY_FILE"] = crt, key
				roots = x509.NewCertPool()
				roots.AddCert(cert)
			}
			b := startBridge(t, env)
			if roots != nil {
				b.URL = strings.Replace(b.URL, "http://", "https://", 1)
			}
			client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
				TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true,
				MaxConnsPerHost: 0, MaxIdleConnsPerHost: floodConns,
			}}
			// Warm up (connections, pools, the first publish), then measure.
			for range 20 {
				if r := signedPost(client, b.URL, itSecret, delivery{ID: newID(), Body: mustSample(t, schema.BatchCompleted)}, time.Now().Unix(), nil); r.Status != 200 {
					t.Fatalf("warm-up: %d %q %v", r.Status, r.Code, r.Err)
				}
			}
			before := metricValue(t, b, "go_memstats_heap_alloc_bytes")

			release := make(chan struct{})
			var wg sync.WaitGroup
			var mu sync.Mutex
			conns := map[string]bool{}
			statuses := map[string]int{}
			for range floodConns {
				id := newID()
				ts := strconv.FormatInt(time.Now().Unix(), 10)
				hdr := "Content-Type: application/json\r\nwebhook-id: " + id + "\r\nwebhook-timestamp: " + ts +
					"\r\nwebhook-signature: v1," + base64.StdEncoding.EncodeToString(make([]byte, 32)) + "\r\n"
				if proto == "HTTP/1.1" {
					c := dialBridge(t, b)
					_ = c.SetDeadline(time.Now().Add(60 * time.Second))
					u, _ := url.Parse(b.URL)
					if _, err := io.WriteString(c, "POST "+u.Path+" HTTP/1.1\r\nHost: "+u.Host+"\r\n"+hdr+
						"Content-Length: "+strconv.Itoa(floodDeclared)+"\r\n\r\n"+strings.Repeat("{", floodSent)); err != nil {
						t.Fatal(err)
					}
					wg.Go(func() {
						<-release
						c.Close()
					})
					continue
				}
				wg.Go(func() {
					body := &stalledReader{first: []byte(strings.Repeat("{", floodSent)), release: release}
					req, _ := http.NewRequest(http.MethodPost, b.URL, body)
					req.ContentLength = floodDeclared
					req.Header.Set("webhook-id", id)
					req.Header.Set("webhook-timestamp", ts)
					req.Header.Set("webhook-signature", "v1,"+base64.StdEncoding.EncodeToString(make([]byte, 32)))
					ctx, cancel := context.WithCancel(context.Background())
					defer cancel()
					go func() { <-release; cancel() }()
					req = req.WithContext(httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
						GotConn: func(ci httptrace.GotConnInfo) {
							mu.Lock()
							conns[ci.Conn.LocalAddr().String()] = true
							mu.Unlock()
						},
					}))
					resp, err := client.Do(req)
					mu.Lock()
					defer mu.Unlock()
					if err != nil {
						statuses["error"]++
						return
					}
					resp.Body.Close()
					statuses[strconv.Itoa(resp.StatusCode)]++
				})
			}
			waitMetric(t, b, "hookbridge_in_flight_requests", func(v float64) bool { return v >= floodConns }, fmt.Sprint(floodConns), 30*time.Second)
			peak := metricValue(t, b, "go_memstats_heap_alloc_bytes")
			held := metricValue(t, b, "hookbridge_in_flight_body_bytes")
			close(release)
			wg.Wait()

			growth := peak - before
			t.Logf("%s: %d requests declaring %d bytes and sending %d: heap %.1f → %.1f MiB (growth %.1f MiB, bound %d MiB); body buffers held %.1f MiB",
				proto, floodConns, floodDeclared, floodSent, before/(1<<20), peak/(1<<20), growth/(1<<20), floodHeapBound>>20, held/(1<<20))
			if growth >= floodHeapBound {
				t.Errorf("the heap grew by %.1f MiB, want < %d MiB", growth/(1<<20), floodHeapBound>>20)
			}
			if held > floodConns*9<<10 {
				t.Errorf("body buffers hold %.0f bytes for %d requests that sent %d bytes each", held, floodConns, floodSent)
			}
			if proto != "HTTP/1.1" {
				// At most 100 streams per connection: 300 requests need 3.
				t.Logf("%d streams on %d connections", floodConns, len(conns))
				if len(conns) < floodConns/100 {
					t.Errorf("%d requests in flight on %d connections: the server allows more than 100 streams per connection", floodConns, len(conns))
				}
				if n := statuses["200"]; n > 0 {
					t.Errorf("%d of the stalled requests were answered 200", n)
				}
			}
			// Every request gives back its slot and its bytes.
			waitMetric(t, b, "hookbridge_in_flight_requests", func(v float64) bool { return v == 0 }, "0", 15*time.Second)
			waitMetric(t, b, "hookbridge_in_flight_body_bytes", func(v float64) bool { return v == 0 }, "0", 5*time.Second)
			if r := signedPost(client, b.URL, itSecret, delivery{ID: newID(), Body: mustSample(t, schema.BatchCompleted)}, time.Now().Unix(), nil); r.Status != 200 {
				t.Errorf("after the flood: %d %q %v", r.Status, r.Code, r.Err)
			}
		})
	}
}

// stalledReader yields first, then blocks until release, then fails.
type stalledReader struct {
	first   []byte
	release chan struct{}
}

func (r *stalledReader) Read(p []byte) (int, error) {
	if len(r.first) > 0 {
		n := copy(p, r.first)
		r.first = r.first[n:]
		return n, nil
	}
	<-r.release
	return 0, io.ErrUnexpectedEOF
}

// TestV1aFloodCost: with a whpk_ key configured, 600 well-formed v1a
// candidates on a 900 KB body are rejected and cost less than 25 times one
// candidate on the same body. Medians of alternating requests, so that the
// machine's noise hits both sides alike.
func TestV1aFloodCost(t *testing.T) {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p := startNATS(t)
	env, _, _ := natsEnv(t, p.URL())
	env["HOOKBRIDGE_SECRETS"] = itSecret + " whpk_" + base64.StdEncoding.EncodeToString(pub)
	b := startBridge(t, env)

	body := bytes.Repeat([]byte("a"), 900_000)
	// Well-formed and expensive: a canonical S (below the group order), so
	// that verification gets as far as hashing the body, as a real
	// signature by another key would.
	fakeSig := func() string {
		s := make([]byte, ed25519.SignatureSize)
		_, _ = rand.Read(s)
		s[63] &= 0x0f
		return "v1a," + base64.StdEncoding.EncodeToString(s)
	}
	var flood []string
	for range 600 {
		flood = append(flood, fakeSig())
	}
	floodHeader := strings.Join(flood, " ")
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	send := func(sig string) time.Duration {
		t.Helper()
		var took time.Duration
		start := time.Now()
		r := signedPost(client, b.URL, itSecret, delivery{ID: newID(), Body: body}, time.Now().Unix(), func(req *http.Request) {
			req.Header.Set("webhook-signature", sig)
			start = time.Now()
		})
		took = time.Since(start)
		if r.Status != 401 || r.Code != "invalid_signature" {
			t.Fatalf("%d candidates: %d %q %v, want 401 invalid_signature", strings.Count(sig, "v1a,"), r.Status, r.Code, r.Err)
		}
		return took
	}
	send(fakeSig()) // warm up
	send(floodHeader)
	const rounds = 9
	var one, many []time.Duration
	for range rounds {
		one = append(one, send(fakeSig()))
		many = append(many, send(floodHeader))
	}
	median := func(d []time.Duration) time.Duration {
		s := slices.Clone(d)
		slices.Sort(s)
		return s[len(s)/2]
	}
	m1, mN := median(one), median(many)
	ratio := float64(mN) / float64(m1)
	t.Logf("900 KB body, one whpk_ key: 1 v1a candidate %s, 600 candidates (%d-byte header) %s (medians of %d alternating): ratio %.1f (bound 25)",
		m1.Round(10*time.Microsecond), len(floodHeader), mN.Round(10*time.Microsecond), rounds, ratio)
	if ratio >= 25 {
		t.Errorf("600 v1a candidates cost %.1f× one, want < 25×", ratio)
	}
}

// TestReadyzAfterAbortedProbes: a /readyz whose client resets the connection
// at once leaves no failure behind for the probes after it.
func TestReadyzAfterAbortedProbes(t *testing.T) {
	p := startNATS(t)
	env, _, _ := natsEnv(t, p.URL())
	b := startBridge(t, env)
	u, _ := url.Parse(b.AdminURL)
	for round := range 3 {
		time.Sleep(1100 * time.Millisecond) // past the reuse period: the next probe evaluates
		c, err := net.DialTimeout("tcp", u.Host, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(c, "GET /readyz HTTP/1.1\r\nHost: "+u.Host+"\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		_ = c.(*net.TCPConn).SetLinger(0) // close with a reset, at once
		c.Close()
		for i := range 10 {
			resp, err := http.Get(b.AdminURL + "/readyz?verbose")
			if err != nil {
				t.Fatal(err)
			}
			text, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("round %d, probe %d after an aborted one: %d\n%s", round+1, i+1, resp.StatusCode, text)
			}
		}
	}
}

// TestURLCredentialsNeverLogged: URL settings with a password, wrong in the
// ways that make nats.go and go-redis echo the URL in their errors; the
// password appears in no line the process writes.
func TestURLCredentialsNeverLogged(t *testing.T) {
	p := startNATS(t)
	const pw = "PWmarker-3f8a2c"
	natsAt := strings.Replace(p.URL(), "nats://", "nats://hookbridge:"+pw+"@", 1)
	dir := t.TempDir()
	base := []string{"HOOKBRIDGE_SECRETS=" + itSecret, "HOOKBRIDGE_DATA_DIR=" + dir,
		fmt.Sprintf("HOOKBRIDGE_LISTEN_ADDR=127.0.0.1:%d", freePort(t)), fmt.Sprintf("HOOKBRIDGE_ADMIN_ADDR=127.0.0.1:%d", freePort(t)),
		"HOOKBRIDGE_LOG_LEVEL=debug"}
	closed := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	for _, c := range []struct {
		name string
		env  []string
	}{
		{"NATS URL with a bad port", []string{"HOOKBRIDGE_BROKER=nats", "HOOKBRIDGE_NATS_URL=nats://hookbridge:" + pw + "@127.0.0.1:notaport"}},
		{"NATS token URL, bad host", []string{"HOOKBRIDGE_BROKER=nats", "HOOKBRIDGE_NATS_URL=nats://" + pw + "@[::1:4222"}},
		{"NATS URL list, one bad", []string{"HOOKBRIDGE_BROKER=nats", "HOOKBRIDGE_NATS_URL=" + natsAt + ",nats://u:" + pw + "@h:x"}},
		{"Redis URL with a bad port", []string{"HOOKBRIDGE_BROKER=nats", "HOOKBRIDGE_NATS_URL=" + natsAt, "HOOKBRIDGE_DEDUP=redis", "HOOKBRIDGE_REDIS_URL=redis://default:" + pw + "@127.0.0.1:notaport/0"}},
		{"Redis URL cut by an unescaped '#'", []string{"HOOKBRIDGE_BROKER=nats", "HOOKBRIDGE_NATS_URL=" + natsAt, "HOOKBRIDGE_DEDUP=redis", "HOOKBRIDGE_REDIS_URL=redis://default:" + pw + "#x@127.0.0.1:6379/0"}},
		{"Redis unreachable", []string{"HOOKBRIDGE_BROKER=nats", "HOOKBRIDGE_NATS_URL=" + natsAt, "HOOKBRIDGE_DEDUP=redis", "HOOKBRIDGE_REDIS_URL=redis://default:" + pw + "@" + closed + "/0"}},
		{"configuration error beside the URL", []string{"HOOKBRIDGE_BROKER=nats", "HOOKBRIDGE_NATS_URL=" + natsAt, "HOOKBRIDGE_TOLERANCE=1ms"}},
	} {
		out, code := runCLI(t, 60*time.Second, append(slices.Clone(base), c.env...), "serve")
		if code == 0 {
			t.Errorf("%s: serve exited 0", c.name)
		}
		if strings.Contains(out, pw) || strings.Contains(out, pw[:8]) {
			t.Errorf("%s: the password is in the output:\n%s", c.name, out)
		}
		if len(out) == 0 {
			t.Errorf("%s: no output at all; the case proves nothing", c.name)
		}
	}
}

// TestEmbeddedBrokerBeyondLoopback: without authentication the embedded
// broker never listens beyond loopback; with a token it requires it from
// everyone, the bridge included.
func TestEmbeddedBrokerBeyondLoopback(t *testing.T) {
	port := freePort(t)
	env := []string{"HOOKBRIDGE_SECRETS=" + itSecret, "HOOKBRIDGE_DATA_DIR=" + t.TempDir(),
		fmt.Sprintf("HOOKBRIDGE_LISTEN_ADDR=127.0.0.1:%d", freePort(t)), fmt.Sprintf("HOOKBRIDGE_ADMIN_ADDR=127.0.0.1:%d", freePort(t)),
		fmt.Sprintf("HOOKBRIDGE_EMBEDDED_NATS_ADDR=0.0.0.0:%d", port)}
	out, code := runCLI(t, 30*time.Second, env, "serve")
	if code != 2 || !strings.Contains(out, "HOOKBRIDGE_EMBEDDED_NATS_TOKEN") {
		t.Fatalf("0.0.0.0 without authentication: exit %d, want 2 with a message naming HOOKBRIDGE_EMBEDDED_NATS_TOKEN:\n%s", code, out)
	}
	if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second); err == nil {
		c.Close()
		t.Fatal("something listens on the refused port")
	}

	const token = "it-embedded-token-9c1e"
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	b := startBridge(t, map[string]string{
		"HOOKBRIDGE_DATA_DIR":            t.TempDir(),
		"HOOKBRIDGE_EMBEDDED_NATS_ADDR":  addr,
		"HOOKBRIDGE_EMBEDDED_NATS_TOKEN": token,
	})
	if nc, err := nats.Connect("nats://"+addr, nats.Timeout(2*time.Second)); err == nil {
		nc.Close()
		t.Fatal("an unauthenticated client was let into the embedded broker")
	}
	nc, err := nats.Connect("nats://"+addr, nats.Token(token), nats.Timeout(2*time.Second))
	if err != nil {
		t.Fatalf("a client with the token: %v", err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync("openai.>")
	if err != nil {
		t.Fatal(err)
	}
	_ = nc.Flush()
	d := delivery{ID: newID(), Body: mustSample(t, schema.BatchCompleted)}
	if r := post(b.URL, d, nil); r.Status != 200 || r.Code != "published" {
		t.Fatalf("publish through the authenticated embedded broker: %d %q %v", r.Status, r.Code, r.Err)
	}
	m, err := sub.NextMsg(5 * time.Second)
	if err != nil || m.Header.Get("webhook-id") != d.ID {
		t.Fatalf("the worker with the token did not get the event: %v", err)
	}
	if strings.Contains(b.logs.String(), token) {
		t.Error("the embedded token is in the logs")
	}
}
