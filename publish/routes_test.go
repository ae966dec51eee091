package publish

import (
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbridge/hookbridge/schema"
)

func TestRouteDestinationAndHeaders(t *testing.T) {
	tests := []struct {
		name, route, prefix string
		body                string
		wantSubject         string
		wantMsgID           string
	}{
		{"no route: the publisher's prefix, bare id", "", "", batchBody, "openai.batch.completed", "wh_1"},
		{"default route: bare id, route header", schema.DefaultRoute, "openai", batchBody, "openai.batch.completed", "wh_1"},
		{"named route: its prefix, route/id", "staging", "staging.openai", batchBody, "staging.openai.batch.completed", "staging/wh_1"},
		{"named route dead letter", "staging", "staging.openai", notEventBody, "staging.openai.deadletter", "staging/wh_1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := delivery(t, "wh_1", tt.body)
			if tt.route != "" {
				d.Route = &schema.Route{Name: tt.route, Prefix: tt.prefix}
			}
			if got := Destination("openai", d); got != tt.wantSubject {
				t.Errorf("Destination = %q, want %q", got, tt.wantSubject)
			}
			h := natsHeader(d, HeaderOptions{})
			if got := h.Get("Nats-Msg-Id"); got != tt.wantMsgID {
				t.Errorf("Nats-Msg-Id = %q, want %q", got, tt.wantMsgID)
			}
			if got := h.Get(HeaderRoute); got != tt.route {
				t.Errorf("NATS %s = %q, want %q", HeaderRoute, got, tt.route)
			}
			var kafkaRoute string
			for _, kh := range kafkaHeaders(d, HeaderOptions{}) {
				if kh.Key == HeaderRoute {
					kafkaRoute = string(kh.Value)
				}
			}
			if kafkaRoute != tt.route {
				t.Errorf("Kafka %s = %q, want %q", HeaderRoute, kafkaRoute, tt.route)
			}
			if len(h) > natsHeaderCap {
				t.Errorf("%d NATS headers, cap %d", len(h), natsHeaderCap)
			}
		})
	}
}

func TestStreamSubjectsForRoutes(t *testing.T) {
	tests := []struct {
		prefix   string
		prefixes []string
		want     []string
	}{
		{"openai", nil, []string{"openai.>"}},
		{"openai", []string{"openai", "staging"}, []string{"openai.>", "staging.>"}},
		// JetStream refuses overlapping subjects in one stream.
		{"openai", []string{"openai.staging", "research"}, []string{"openai.>", "research.>"}},
		{"prod.openai", []string{"prod"}, []string{"prod.>"}},
	}
	for _, tt := range tests {
		got := NATSConfig{Prefix: tt.prefix, Prefixes: tt.prefixes}.streamConfig().Subjects
		if !slices.Equal(got, tt.want) {
			t.Errorf("prefix %q prefixes %q: subjects %q, want %q", tt.prefix, tt.prefixes, got, tt.want)
		}
	}
}

func TestStreamMissingRoutePrefix(t *testing.T) {
	env := newNATSEnv(t)
	other := env.prefix + "_staging"
	if _, err := env.js.CreateStream(testCtx(t), jetstream.StreamConfig{
		Name: env.stream, Subjects: []string{env.prefix + ".>"}, Storage: jetstream.MemoryStorage,
	}); err != nil {
		t.Fatal(err)
	}
	cfg := env.config()
	cfg.Prefixes = []string{env.prefix, other}
	_, err := NewNATS(testCtx(t), env.nc, cfg, testLog(t))
	if err == nil {
		t.Fatal("NewNATS accepted a stream that misses a route prefix")
	}
	want := "nats stream edit " + env.stream + " --subjects '" + env.prefix + ".>," + other + ".>'"
	for _, s := range []string{want, "HOOKBRIDGE_ROUTES_<n>_PREFIX", "does not modify"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q lacks %q", err, s)
		}
	}
	if got := env.streamInfo(t).Config.Subjects; !slices.Equal(got, []string{env.prefix + ".>"}) {
		t.Errorf("stream subjects rewritten to %q", got)
	}
}

func TestStreamCreatedForRoutes(t *testing.T) {
	env := newNATSEnv(t)
	other := env.prefix + "_staging"
	cfg := env.config()
	cfg.Prefixes = []string{env.prefix, other}
	n := env.newNATS(t, cfg)
	for _, route := range []struct{ name, prefix string }{{schema.DefaultRoute, env.prefix}, {"staging", other}} {
		d := delivery(t, "wh_same", batchBody)
		d.Route = &schema.Route{Name: route.name, Prefix: route.prefix}
		dup, err := n.Publish(testCtx(t), d)
		if err != nil || dup {
			t.Fatalf("route %s: Publish = %v, %v; want stored", route.name, dup, err)
		}
	}
	msgs := env.readAll(t, 2)
	if len(msgs) != 2 {
		t.Fatalf("%d messages, want one per route", len(msgs))
	}
	for i, want := range []string{env.prefix, other} {
		if got := msgs[i].Subject(); got != want+".batch.completed" {
			t.Errorf("message %d on %q, want %s.batch.completed", i, got, want)
		}
	}
}

func TestKafkaStartupTopicsForRoutes(t *testing.T) {
	cfg := KafkaConfig{Prefix: "openai", Prefixes: []string{"openai", "staging"}, KnownTypes: []string{"batch.completed"}}
	want := []string{"openai.batch.completed", "openai.deadletter", "staging.batch.completed", "staging.deadletter"}
	if got := cfg.startupTopics(); !slices.Equal(got, want) {
		t.Errorf("startupTopics = %q, want %q", got, want)
	}
	cfg.Brokers = []string{"127.0.0.1:9092"}
	cfg.Prefixes = []string{"bad prefix"}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "bad prefix") {
		t.Errorf("Validate with a bad route prefix = %v", err)
	}
}
