package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbridge/hookbridge/schema"
)

// routeFixture is a bridge with two routes, prod and staging, each with its
// own secret (in its own file), path and prefix.
type routeFixture struct {
	b                         *bridge
	base                      string // http://host:port
	prodSecret, stagingSecret opsSecret
	prodFile, stagingFile     string
	prodPrefix, stagingPrefix string
}

func (f *routeFixture) url(path string) string { return f.base + path }

// startRoutes starts the bridge with env plus the two routes; prefix is the
// test's own, under which each route gets its prefix.
func startRoutes(t *testing.T, env map[string]string, prefix string) *routeFixture {
	t.Helper()
	dir := t.TempDir()
	f := &routeFixture{
		prodSecret: newOpsSecret(t), stagingSecret: newOpsSecret(t),
		prodFile: filepath.Join(dir, "prod"), stagingFile: filepath.Join(dir, "staging"),
		prodPrefix: prefix + "_prod", stagingPrefix: prefix + "_staging",
	}
	opsWriteFile(t, f.prodFile, []byte(f.prodSecret.Text+"\n"))
	opsWriteFile(t, f.stagingFile, []byte(f.stagingSecret.Text+"\n"))
	env["HOOKBRIDGE_SECRETS"] = "" // startBridge's single-endpoint secret: routes replace it
	env["HOOKBRIDGE_RELOAD_INTERVAL"] = "100ms"
	for k, v := range map[string]string{
		"0_NAME": "prod", "0_PATH": "/hooks/prod", "0_SECRETS_FILE": f.prodFile, "0_PREFIX": f.prodPrefix,
		"1_NAME": "staging", "1_PATH": "/hooks/staging", "1_SECRETS_FILE": f.stagingFile, "1_PREFIX": f.stagingPrefix,
	} {
		env["HOOKBRIDGE_ROUTES_"+k] = v
	}
	f.b = startBridge(t, env)
	f.base = strings.TrimSuffix(f.b.URL, "/webhooks/openai")
	return f
}

// checkRouting is what both brokers must do with two routes: each route
// accepts only its own secret, one webhook-id is published once per route,
// a repeat on one route is a duplicate, and other paths are 404. It returns
// the deliveries published, by route.
func (f *routeFixture) checkRouting(t *testing.T) (same, deadLetter delivery) {
	t.Helper()
	same = delivery{ID: newID(), Body: mustSample(t, schema.BatchCompleted)}
	deadLetter = delivery{ID: newID(), Body: []byte(`{"not":"an event"}`)}
	other := delivery{ID: newID(), Body: mustSample(t, schema.BatchCompleted)}
	steps := []struct {
		name   string
		path   string
		secret opsSecret
		d      delivery
		status int
		code   string
	}{
		{"prod, its own secret", "/hooks/prod", f.prodSecret, same, 200, "published"},
		{"staging, same webhook-id, its own secret", "/hooks/staging", f.stagingSecret, same, 200, "published"},
		{"prod again", "/hooks/prod", f.prodSecret, same, 200, "duplicate"},
		{"staging again", "/hooks/staging", f.stagingSecret, same, 200, "duplicate"},
		{"prod signed with staging's secret", "/hooks/prod", f.stagingSecret, other, 401, "invalid_signature"},
		{"staging signed with prod's secret", "/hooks/staging", f.prodSecret, other, 401, "invalid_signature"},
		{"the single-endpoint path", "/webhooks/openai", f.prodSecret, other, 404, "not_found"},
		{"an unknown path", "/hooks/research", f.prodSecret, other, 404, "not_found"},
		{"staging dead letter", "/hooks/staging", f.stagingSecret, deadLetter, 200, "deadlettered"},
	}
	for _, s := range steps {
		if r := opsPost(httpClient, f.url(s.path), s.secret, s.d, nil); r.Status != s.status || r.Code != s.code {
			t.Fatalf("%s: %d %q %v, want %d %s\n%s", s.name, r.Status, r.Code, r.Err, s.status, s.code, f.b.logs)
		}
	}
	return same, deadLetter
}

// checkRouteLog: the start-up log names each route with its secret count,
// and /readyz?verbose lists the routes; no secret anywhere.
func (f *routeFixture) checkRouteLog(t *testing.T) {
	t.Helper()
	logs := f.b.logs.String()
	for _, want := range []string{`"route":"prod"`, `"route":"staging"`, `"secrets":1`, `"path":"/hooks/staging"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("start-up log lacks %s", want)
		}
	}
	resp, err := http.Get(f.b.AdminURL + "/readyz?verbose")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"route prod: POST /hooks/prod -> " + f.prodPrefix, "route staging: POST /hooks/staging -> " + f.stagingPrefix} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/readyz?verbose lacks %q:\n%s", want, body)
		}
	}
	for _, s := range []string{f.prodSecret.Text, f.stagingSecret.Text, strings.TrimPrefix(f.prodSecret.Text, "whsec_")} {
		if strings.Contains(logs, s) || strings.Contains(string(body), s) {
			t.Error("a route secret is in the log or /readyz")
		}
	}
	if v := opsMetric(t, f.b.AdminURL, `hookbridge_route_requests_total{outcome="duplicate",route="prod"}`); v != 1 {
		t.Errorf("prod duplicates metric = %v, want 1", v)
	}
}

// TestRoutes_NATS: two routes on a real nats-server, each with its own
// secret, prefix and route header; one webhook-id on both routes is stored
// twice (once per route), a repeat is a duplicate; the stream captures both
// prefixes; a secrets-file reload on one route leaves the other alone.
func TestRoutes_NATS(t *testing.T) {
	for _, target := range natsTargets(t) {
		t.Run(target.name, func(t *testing.T) {
			env, prefix, stream := natsEnv(t, target.url)
			f := startRoutes(t, env, prefix)
			same, dl := f.checkRouting(t)
			f.checkRouteLog(t)

			msgs := readStream(t, target.url, stream)
			want := []struct{ subject, route, msgID string }{
				{f.prodPrefix + ".batch.completed", "prod", "prod/" + same.ID},
				{f.stagingPrefix + ".batch.completed", "staging", "staging/" + same.ID},
				{f.stagingPrefix + ".deadletter", "staging", "staging/" + dl.ID},
			}
			if len(msgs) != len(want) {
				t.Fatalf("%d messages in the stream, want %d", len(msgs), len(want))
			}
			for i, w := range want {
				m := msgs[i]
				body := same.Body
				if i == 2 {
					body = dl.Body
				}
				if m.Subject != w.subject || m.Header.Get("hookbridge-route") != w.route || m.Header.Get("Nats-Msg-Id") != w.msgID || !bytes.Equal(m.Data, body) {
					t.Errorf("message %d: %s route %q id %q (body equal %v), want %+v", i, m.Subject,
						m.Header.Get("hookbridge-route"), m.Header.Get("Nats-Msg-Id"), bytes.Equal(m.Data, body), w)
				}
			}
			_, info := openStream(t, context.Background(), target.url, stream)
			if got := strings.Join(info.Config.Subjects, ","); got != f.prodPrefix+".>,"+f.stagingPrefix+".>" {
				t.Errorf("stream subjects %s", got)
			}
			f.checkReload(t)
		})
	}
}

// checkReload rotates prod's secrets file, then breaks staging's: each
// reload touches its own route only.
func (f *routeFixture) checkReload(t *testing.T) {
	t.Helper()
	next := newOpsSecret(t)
	opsWriteFile(t, f.prodFile, []byte(next.Text+"\n"+f.prodSecret.Text+"\n"))
	if !opsWaitMetric(t, f.b.AdminURL, `hookbridge_route_secrets_loaded{route="prod"}`, 10*time.Second, func(v float64) bool { return v == 2 }) {
		t.Fatalf("prod's new secrets file not loaded:\n%s", f.b.logs)
	}
	steps := []struct {
		path   string
		secret opsSecret
		status int
	}{
		{"/hooks/prod", next, 200},
		{"/hooks/prod", f.prodSecret, 200},
		{"/hooks/staging", f.stagingSecret, 200},
		{"/hooks/staging", next, 401},
	}
	check := func(when string) {
		for _, s := range steps {
			d := delivery{ID: newID(), Body: mustSample(t, schema.ResponseCompleted)}
			if r := opsPost(httpClient, f.url(s.path), s.secret, d, nil); r.Status != s.status {
				t.Errorf("%s: %s: %d %q %v, want %d", when, s.path, r.Status, r.Code, r.Err, s.status)
			}
		}
	}
	check("after prod's rotation")
	opsWriteFile(t, f.stagingFile, []byte("whsec_not*base64\n"))
	if !opsWaitMetric(t, f.b.AdminURL, `hookbridge_secret_reload_errors_total`, 10*time.Second, func(v float64) bool { return v >= 1 }) {
		t.Fatalf("staging's broken secrets file not noticed:\n%s", f.b.logs)
	}
	check("after staging's broken file")
	if v := opsMetric(t, f.b.AdminURL, `hookbridge_route_secrets_loaded{route="staging"}`); v != 1 {
		t.Errorf("staging secrets loaded = %v, want its previous 1", v)
	}
}

// TestRoutes_NATSStreamMissingPrefix: an existing stream that does not
// capture a route's prefix stops start-up with the command that fixes it,
// and is left as it was.
func TestRoutes_NATSStreamMissingPrefix(t *testing.T) {
	p := startNATS(t)
	env, prefix, stream := natsEnv(t, p.URL())
	nc, err := nats.Connect(p.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: stream, Subjects: []string{prefix + "_prod.>"}}); err != nil {
		t.Fatal(err)
	}
	var environ []string
	for k, v := range env {
		environ = append(environ, k+"="+v)
	}
	environ = append(environ,
		"HOOKBRIDGE_LISTEN_ADDR=127.0.0.1:0", "HOOKBRIDGE_ADMIN_ADDR=127.0.0.1:0",
		"HOOKBRIDGE_ROUTES_0_NAME=prod", "HOOKBRIDGE_ROUTES_0_PATH=/p", "HOOKBRIDGE_ROUTES_0_SECRETS="+itSecret,
		"HOOKBRIDGE_ROUTES_0_PREFIX="+prefix+"_prod",
		"HOOKBRIDGE_ROUTES_1_NAME=staging", "HOOKBRIDGE_ROUTES_1_PATH=/s", "HOOKBRIDGE_ROUTES_1_SECRETS="+itSecret,
		"HOOKBRIDGE_ROUTES_1_PREFIX="+prefix+"_staging")
	out, code := runCLI(t, 30*time.Second, environ, "serve")
	fix := fmt.Sprintf("nats stream edit %s --subjects '%s_prod.>,%s_staging.>'", stream, prefix, prefix)
	if code == 0 || !strings.Contains(out, fix) {
		t.Errorf("serve exited %d without %q:\n%s", code, fix, out)
	}
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().Config.Subjects; len(got) != 1 || got[0] != prefix+"_prod.>" {
		t.Errorf("stream subjects rewritten to %q", got)
	}
}

// TestRoutes_Kafka: the two routes on Kafka: each route's topics under its
// prefix, the route in a record header, one record per route for one
// webhook-id.
func TestRoutes_Kafka(t *testing.T) {
	forEachKafka(t, func(t *testing.T, kc *kafkaCluster) {
		for name, dedupEnv := range kafkaDedupStores(t) {
			t.Run(name, func(t *testing.T) { kafkaRoutes(t, kc, dedupEnv) })
		}
	})
}

func kafkaRoutes(t *testing.T, kc *kafkaCluster, env map[string]string) {
	prefix := uniqueKafkaPrefix(t)
	env["HOOKBRIDGE_BROKER"] = "kafka"
	env["HOOKBRIDGE_KAFKA_BROKERS"] = strings.Join(kc.brokers, ",")
	env["HOOKBRIDGE_KAFKA_REPLICATION_FACTOR"] = fmt.Sprint(kc.rf)
	f := startRoutes(t, env, prefix)
	same, dl := f.checkRouting(t)
	f.checkRouteLog(t)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kc.readAll(ctx, t, "^"+prefix+`_.*`, 3)
	time.Sleep(500 * time.Millisecond) // stragglers would be duplicates
	recs := kc.readAll(ctx, t, "^"+prefix+`_.*`, 3)
	if len(recs) != 3 {
		t.Fatalf("%d records, want 3", len(recs))
	}
	want := map[string]delivery{
		f.prodPrefix + ".batch.completed":    same,
		f.stagingPrefix + ".batch.completed": same,
		f.stagingPrefix + ".deadletter":      dl,
	}
	for _, r := range recs {
		d, ok := want[r.Topic]
		if !ok {
			t.Errorf("record on unexpected topic %s", r.Topic)
			continue
		}
		delete(want, r.Topic)
		h := kafkaHeaderMap(t, r)
		route := strings.TrimPrefix(strings.SplitN(r.Topic, ".", 2)[0], prefix+"_")
		if h["hookbridge-route"] != route || h["webhook-id"] != d.ID || !bytes.Equal(r.Value, d.Body) {
			t.Errorf("%s: route header %q webhook-id %q body equal %v; want route %s", r.Topic, h["hookbridge-route"], h["webhook-id"], bytes.Equal(r.Value, d.Body), route)
		}
	}
}
