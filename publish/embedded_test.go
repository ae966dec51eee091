package publish

import (
	"bytes"
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestEmbeddedExternalClientSeesPublishes(t *testing.T) {
	e := startEmbedded(t, "127.0.0.1:0", t.TempDir())
	defer e.Shutdown()
	url := e.ClientURL()
	if !strings.HasPrefix(url, "nats://127.0.0.1:") || strings.HasSuffix(url, ":0") || strings.HasSuffix(url, ":4222") {
		t.Fatalf("ClientURL = %q, want the bound loopback port", url)
	}

	worker, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer worker.Close()
	sub, err := worker.SubscribeSync("openai.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := worker.Flush(); err != nil {
		t.Fatal(err)
	}

	nc, err := e.Connect(testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	n, err := NewNATS(testCtx(t), nc, NATSConfig{}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close(testCtx(t))

	ds := []struct{ id, body, subject string }{
		{"wh_e1", batchBody, "openai.batch.completed"},
		{"wh_e2", callBody, "openai.realtime.call.incoming"},
		{"wh_e3", notEventBody, "openai.deadletter"},
	}
	for _, d := range ds {
		if _, err := n.Publish(testCtx(t), delivery(t, d.id, d.body)); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range ds {
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("worker waiting for %s: %v", d.id, err)
		}
		if m.Subject != d.subject || m.Header.Get(HeaderWebhookID) != d.id || string(m.Data) != d.body {
			t.Errorf("worker got %s %s %q, want %s %s %q", m.Subject, m.Header.Get(HeaderWebhookID), m.Data, d.subject, d.id, d.body)
		}
	}
}

func TestEmbeddedRestartKeepsMessages(t *testing.T) {
	dir := t.TempDir()
	bodies := []string{batchBody, sessionBody}

	// First life, fsyncing every write.
	e, err := StartEmbedded(EmbeddedConfig{Addr: "127.0.0.1:0", DataDir: dir, SyncAlways: true}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := e.Connect(testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	n, err := NewNATS(testCtx(t), nc, NATSConfig{}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range bodies {
		if _, err := n.Publish(testCtx(t), delivery(t, "wh_keep"+string(rune('a'+i)), b)); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.Close(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	e.Shutdown()

	// Second life on the same store: the stream is found, not recreated.
	e = startEmbedded(t, "127.0.0.1:0", dir)
	defer e.Shutdown()
	nc, err = e.Connect(testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := NewNATS(testCtx(t), nc, NATSConfig{}, testLog(t)); err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(testCtx(t), DefaultNATSStream)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().State.Msgs; got != uint64(len(bodies)) {
		t.Fatalf("stream holds %d messages after restart, want %d", got, len(bodies))
	}
	for i, b := range bodies {
		m, err := s.GetMsg(testCtx(t), uint64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(m.Data, []byte(b)) {
			t.Errorf("message %d body %q, want %q", i+1, m.Data, b)
		}
	}
}

func TestStartEmbeddedAddressErrors(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := taken.Addr().String()

	tests := []struct {
		name    string
		addr    string
		want    []string
		wantErr error
	}{
		{
			name: "port taken",
			addr: addr,
			want: []string{
				"embedded NATS: " + addr + " is already in use (HOOKBRIDGE_EMBEDDED_NATS_ADDR)",
				"set HOOKBRIDGE_EMBEDDED_NATS_ADDR=127.0.0.1:0 for a free port",
				"or use HOOKBRIDGE_BROKER=nats to use the server already running there",
			},
			wantErr: syscall.EADDRINUSE,
		},
		{name: "no port", addr: "127.0.0.1", want: []string{"HOOKBRIDGE_EMBEDDED_NATS_ADDR"}},
		{name: "bad port", addr: "127.0.0.1:http", want: []string{"HOOKBRIDGE_EMBEDDED_NATS_ADDR", "bad port"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := StartEmbedded(EmbeddedConfig{Addr: tt.addr, DataDir: t.TempDir()}, testLog(t))
			if err == nil {
				e.Shutdown()
				t.Fatal("StartEmbedded succeeded")
			}
			for _, s := range tt.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q lacks %q", err, s)
				}
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error %v does not wrap %v", err, tt.wantErr)
			}
		})
	}
}
