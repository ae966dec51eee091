package integration

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbridge/hookbridge/schema"
)

// TestNATS_WindowCoversTTL: with HOOKBRIDGE_DEDUP_TTL no longer than the
// stream's duplicate window, the window alone keeps the promise: no KV
// bucket is created, and repeats of young and old events are answered
// duplicate by JetStream.
func TestNATS_WindowCoversTTL(t *testing.T) {
	p := startNATS(t)
	env, _, stream := natsEnv(t, p.URL())
	env["HOOKBRIDGE_DEDUP_TTL"] = "1h" // the window is 2h
	b := startBridge(t, env)
	if !strings.Contains(b.logs.String(), "no KV bucket") {
		t.Errorf("start-up does not say that no bucket is used:\n%s", b.logs)
	}
	now := time.Now()
	for _, created := range []time.Time{now, now.Add(-3 * time.Hour)} {
		d := delivery{ID: newID(), Body: createdAt(t, mustSample(t, schema.BatchCompleted), created.Unix())}
		for i, want := range []string{"published", "duplicate"} {
			if r := post(b.URL, d, nil); r.Status != 200 || r.Code != want {
				t.Fatalf("created %s ago, delivery %d: %d %q %v, want 200 %s", now.Sub(created).Round(time.Hour), i+1, r.Status, r.Code, r.Err, want)
			}
		}
	}
	nc, err := nats.Connect(p.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := js.KeyValue(ctx, env["HOOKBRIDGE_DEDUP_BUCKET"]); !errors.Is(err, jetstream.ErrBucketNotFound) {
		t.Errorf("dedup bucket lookup: %v, want not found", err)
	}
	if got := len(readStream(t, p.URL(), stream)); got != 2 {
		t.Errorf("stream holds %d messages, want 2", got)
	}
	if n := opsMetric(t, b.AdminURL, `hookbridge_dedup_path_total{path="window"}`); n != 4 {
		t.Errorf("window path taken %v times, want 4", n)
	}
}

// TestNATS_StreamWithoutLastingWindow: an existing work-queue stream forgets
// consumed messages, and with them, after a restart, their ids: its window
// cannot be the claim, so every delivery takes the KV protocol, and the
// bridge says why at start-up.
func TestNATS_StreamWithoutLastingWindow(t *testing.T) {
	p := startNATS(t)
	env, prefix, stream := natsEnv(t, p.URL())
	nc, err := nats.Connect(p.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: stream, Subjects: []string{prefix + ".>"},
		Retention: jetstream.WorkQueuePolicy, Duplicates: 2 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	b := startBridge(t, env)
	if !strings.Contains(b.logs.String(), "does not survive a server restart") || !strings.Contains(b.logs.String(), "retention") {
		t.Errorf("start-up does not say why the window is not used:\n%s", b.logs)
	}
	d := delivery{ID: newID(), Body: createdAt(t, mustSample(t, schema.BatchCompleted), time.Now().Unix())}
	for i, want := range []string{"published", "duplicate"} {
		if r := post(b.URL, d, nil); r.Status != 200 || r.Code != want {
			t.Fatalf("delivery %d: %d %q %v, want 200 %s", i+1, r.Status, r.Code, r.Err, want)
		}
	}
	if n := opsMetric(t, b.AdminURL, `hookbridge_dedup_path_total{path="store"}`); n != 2 {
		t.Errorf("store path taken %v times, want 2", n)
	}
}
