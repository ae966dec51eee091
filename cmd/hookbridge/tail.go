package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbridge/hookbridge/publish"
	"github.com/hookbridge/hookbridge/schema"
)

// splitList splits a comma- or space-separated list, dropping empty items.
func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' })
}

const tailUsage = `Usage: hookbridge tail [flags]

Follows the events on the bus and prints one line per event (time, type,
event id, object id, webhook-id, and the trace id when the message carries a
traceparent), or the raw JSON body with --json.

--type filters by event type; "*" matches one token and ">" (or "**") the
rest: --type batch.completed, --type 'batch.*', --type 'agent.>'.
Repeat --type for several filters (NATS servers ≥ 2.10).

Defaults come from a running "hookbridge serve --dev" or "make up"
(HOOKBRIDGE_DATA_DIR/dev.json), else HOOKBRIDGE_NATS_URL, else
nats://127.0.0.1:4222. With --kafka (default HOOKBRIDGE_KAFKA_BROKERS, else
the Kafka brokers in dev.json) it reads the matching <prefix>.* topics
instead, with the HOOKBRIDGE_KAFKA_TLS*/SASL* settings; --nats overrides a
Kafka default.

Flags:
`

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func runTail(args []string, io stdio) int {
	fs := flag.NewFlagSet("tail", flag.ContinueOnError)
	fs.SetOutput(io.err)
	dev, haveDev := readDevState(io.getenv)
	defNATS := io.getenv(envPrefix + "NATS_URL")
	if haveDev && dev.NATSURL != "" {
		defNATS = dev.NATSURL
	}
	if defNATS == "" {
		defNATS = "nats://127.0.0.1:4222"
	}
	var types multiFlag
	natsURL := fs.String("nats", defNATS, "NATS server URL")
	stream := fs.String("stream", envOr(io.getenv, "NATS_STREAM", "OPENAI_WEBHOOKS"), "JetStream stream")
	prefix := fs.String("prefix", envOr(io.getenv, "TOPIC_PREFIX", "openai"), "subject prefix")
	fs.Var(&types, "type", "event type filter (repeatable; * and > wildcards)")
	all := fs.Bool("all", false, "start from the first stored event instead of new ones")
	asJSON := fs.Bool("json", false, "print each raw body (one JSON document per line)")
	count := fs.Int("count", 0, "exit after this many events (0 = follow until interrupted)")
	defKafka := strings.Join(splitList(io.getenv(envPrefix+"KAFKA_BROKERS")), ",")
	if defKafka == "" && haveDev {
		defKafka = dev.KafkaBrokers
	}
	kafkaBrokers := fs.String("kafka", defKafka, "read from these Kafka brokers instead of NATS (host:port,…)")
	kafkaTopic := fs.String("topic", io.getenv(envPrefix+"KAFKA_TOPIC"), "Kafka single-topic mode: read this topic")
	group := fs.String("group", "", "Kafka consumer group (default: an ephemeral group that commits nothing)")
	wait := fs.Duration("wait", 0, "with --count: give up (exit 1) after this long")
	fs.Usage = func() { fmt.Fprint(io.err, tailUsage); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(io.err, "hookbridge tail: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	explicit := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
	if explicit["nats"] && !explicit["kafka"] {
		*kafkaBrokers = "" // --nats given: NATS, whatever the default said
	}
	filters := make([]string, 0, len(types))
	for _, t := range types {
		s, err := typeFilter(*prefix, t)
		if err != nil {
			fmt.Fprintf(io.err, "hookbridge tail: %v\n", err)
			return 2
		}
		filters = append(filters, s)
	}
	if len(filters) == 0 {
		filters = []string{*prefix + ".>"}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *count > 0 && *wait > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *wait)
		defer cancel()
	}
	var n int
	var err error
	if *kafkaBrokers != "" {
		kcfg := publish.KafkaConfig{
			Brokers: splitList(*kafkaBrokers), Prefix: *prefix, Topic: *kafkaTopic,
			ClientID: "hookbridge-tail",
			TLS: publish.KafkaTLS{
				Enabled: io.getenv(envPrefix+"KAFKA_TLS") == "true", CAFile: io.getenv(envPrefix + "KAFKA_TLS_CA_FILE"),
				CertFile: io.getenv(envPrefix + "KAFKA_TLS_CERT_FILE"), KeyFile: io.getenv(envPrefix + "KAFKA_TLS_KEY_FILE"),
			},
			SASL: publish.KafkaSASL{Mechanism: io.getenv(envPrefix + "KAFKA_SASL_MECHANISM"),
				Username: io.getenv(envPrefix + "KAFKA_SASL_USERNAME"), Password: io.getenv(envPrefix + "KAFKA_SASL_PASSWORD")},
		}
		n, err = tailKafka(ctx, kcfg, filters, *group, *all, *asJSON, *count, io.out)
	} else {
		n, err = tailNATS(ctx, *natsURL, *stream, filters, *all, *asJSON, *count, io.out)
	}
	if err != nil {
		fmt.Fprintf(io.err, "hookbridge tail: %v\n", err)
		return 1
	}
	if *count > 0 && n < *count {
		fmt.Fprintf(io.err, "hookbridge tail: got %d of %d events before giving up\n", n, *count)
		return 1
	}
	return 0
}

func envOr(getenv func(string) string, name, def string) string {
	if v := getenv(envPrefix + name); v != "" {
		return v
	}
	return def
}

// typeFilter maps a type pattern to a subject filter under prefix.
func typeFilter(prefix, pattern string) (string, error) {
	toks := strings.Split(pattern, ".")
	for i, t := range toks {
		switch {
		case t == "**" || t == ">":
			if i != len(toks)-1 {
				return "", fmt.Errorf("--type %q: %q must be the last token", pattern, t)
			}
			toks[i] = ">"
		case t == "*":
		case !schema.Type(t).Routable():
			return "", fmt.Errorf("--type %q: %q is not a type token (a-z, 0-9, _)", pattern, t)
		}
	}
	return prefix + "." + strings.Join(toks, "."), nil
}

func tailNATS(ctx context.Context, url, stream string, filters []string, all, asJSON bool, count int, out io.Writer) (int, error) {
	nc, err := nats.Connect(url, nats.Name("hookbridge-tail"), nats.Timeout(5*time.Second))
	if err != nil {
		return 0, fmt.Errorf("connect to %s: %w (is the bridge running? `make run`)", url, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, err
	}
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy}
	if all {
		cfg.DeliverPolicy = jetstream.DeliverAllPolicy
	}
	cfg.FilterSubjects = filters
	cons, err := js.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", stream, err)
	}
	msgs, err := cons.Messages()
	if err != nil {
		return 0, err
	}
	defer msgs.Stop()
	go func() { <-ctx.Done(); msgs.Stop() }()

	n := 0
	for count == 0 || n < count {
		msg, err := msgs.Next()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return n, nil
			}
			return n, err
		}
		n++
		printEvent(out, msg.Subject(), msg.Headers(), msg.Data(), asJSON)
	}
	return n, nil
}

// printEvent writes one line for a message. Headers may be nil.
func printEvent(out io.Writer, subject string, h map[string][]string, body []byte, asJSON bool) {
	if asJSON {
		out.Write(body)
		out.Write([]byte{'\n'})
		return
	}
	get := func(k string) string {
		if v := h[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	when := time.Now().UTC().Format(time.RFC3339)
	typ, id, obj := "-", "-", "-"
	if ev, err := schema.Parse(body); err == nil {
		typ, id = string(ev.Type), ev.ID
		if !ev.Time().IsZero() {
			when = ev.Time().Format(time.RFC3339)
		}
		if o := ev.ObjectID(); o != "" {
			obj = o
		}
	} else {
		typ = "deadletter(" + get("hookbridge-reason") + ")"
	}
	trace := ""
	if tid := schema.Headers(h).TraceID(); tid != "" {
		trace = "  trace=" + tid
	}
	fmt.Fprintf(out, "%s  %-34s %-38s %-30s webhook-id=%s  subject=%s%s\n", when, typ, id, obj, get("webhook-id"), subject, trace)
}
