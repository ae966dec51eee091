package main

import (
	"cmp"
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
Kafka default. --route NAME follows the prefix of that route
(HOOKBRIDGE_ROUTES_<n>_PREFIX) instead of HOOKBRIDGE_TOPIC_PREFIX.

Flags:
`

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// tailEnv is what tail reads of the environment contract: where the bus is,
// and dev.json's directory.
type tailEnv struct {
	MessageEnv
	NATSEnv
	StreamEnv
	KafkaEnv
	DataEnv
}

// tailOptions is what to follow, and how to print it.
type tailOptions struct {
	natsURL, stream string
	kafka           publish.KafkaConfig // Brokers empty: NATS
	group           string
	filters         []string
	all, asJSON     bool
	count           int
	wait            time.Duration
}

func runTail(args []string, io stdio) int {
	o, code := parseTail(args, io)
	if o == nil {
		return code
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.count > 0 && o.wait > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.wait)
		defer cancel()
	}
	var n int
	var err error
	if len(o.kafka.Brokers) > 0 {
		n, err = tailKafka(ctx, o.kafka, o.filters, o.group, o.all, o.asJSON, o.count, io.out)
	} else {
		n, err = tailNATS(ctx, o.natsURL, o.stream, o.filters, o.all, o.asJSON, o.count, io.out)
	}
	if err != nil {
		fmt.Fprintf(io.err, "hookbridge tail: %v\n", err)
		return 1
	}
	if o.count > 0 && n < o.count {
		fmt.Fprintf(io.err, "hookbridge tail: got %d of %d events before giving up\n", n, o.count)
		return 1
	}
	return 0
}

// parseTail reads the flags, whose defaults come from the environment and
// dev.json; nil and the exit code when there is nothing to run.
func parseTail(args []string, io stdio) (*tailOptions, int) {
	e, err := parseEnv[tailEnv](io.env)
	if err != nil {
		fmt.Fprintf(io.err, "hookbridge tail: %v\n", err)
		return nil, 2
	}
	defNATS, defKafka := e.NATSURL, strings.Join(e.KafkaBrokers, ",")
	if dev, ok := readDevState(e.DataDir); ok {
		defNATS = cmp.Or(dev.NATSURL, defNATS)
		defKafka = cmp.Or(defKafka, dev.KafkaBrokers)
	}
	fs := flag.NewFlagSet("tail", flag.ContinueOnError)
	fs.SetOutput(io.err)
	var types multiFlag
	o := &tailOptions{}
	fs.StringVar(&o.natsURL, "nats", cmp.Or(defNATS, "nats://"+publish.DefaultEmbeddedAddr), "NATS server URL")
	fs.StringVar(&o.stream, "stream", e.NATSStream, "JetStream stream")
	prefix := fs.String("prefix", e.TopicPrefix, "subject prefix")
	route := fs.String("route", "", "follow this route's prefix (HOOKBRIDGE_ROUTES_<n>_NAME)")
	fs.Var(&types, "type", "event type filter (repeatable; * and > wildcards)")
	fs.BoolVar(&o.all, "all", false, "start from the first stored event instead of new ones")
	fs.BoolVar(&o.asJSON, "json", false, "print each raw body (one JSON document per line)")
	fs.IntVar(&o.count, "count", 0, "exit after this many events (0 = follow until interrupted)")
	kafkaBrokers := fs.String("kafka", defKafka, "read from these Kafka brokers instead of NATS (host:port,…)")
	topic := fs.String("topic", e.KafkaTopic, "Kafka single-topic mode: read this topic")
	fs.StringVar(&o.group, "group", "", "Kafka consumer group (default: an ephemeral group that commits nothing)")
	fs.DurationVar(&o.wait, "wait", 0, "with --count: give up (exit 1) after this long")
	fs.Usage = func() { fmt.Fprint(io.err, tailUsage); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, 0
		}
		return nil, 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(io.err, "hookbridge tail: unexpected argument %q\n", fs.Arg(0))
		return nil, 2
	}
	explicit := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
	if explicit["nats"] && !explicit["kafka"] {
		*kafkaBrokers = "" // --nats given: NATS, whatever the default said
	}
	if *route != "" {
		if *prefix, err = tailRoutePrefix(io.env, *route, explicit["prefix"]); err != nil {
			fmt.Fprintf(io.err, "hookbridge tail: %v\n", err)
			return nil, 2
		}
	}
	if o.filters, err = typeFilters(*prefix, types); err != nil {
		fmt.Fprintf(io.err, "hookbridge tail: %v\n", err)
		return nil, 2
	}
	e.KafkaBrokers, e.KafkaTopic = strings.FieldsFunc(*kafkaBrokers, func(r rune) bool { return r == ',' || r == ' ' }), *topic
	o.kafka = e.KafkaEnv.kafkaConfig(*prefix, "hookbridge-tail")
	return o, 0
}

// tailRoutePrefix is the prefix of the route --route names.
func tailRoutePrefix(environ map[string]string, name string, prefixGiven bool) (string, error) {
	if prefixGiven {
		return "", errors.New("--route and --prefix both say where to read; give one")
	}
	rc, _, err := commandRoute(environ, name)
	return rc.prefix, err
}

// typeFilters maps the --type patterns to subject filters under prefix;
// none is every subject under it.
func typeFilters(prefix string, patterns []string) ([]string, error) {
	if len(patterns) == 0 {
		return []string{prefix + ".>"}, nil
	}
	filters := make([]string, 0, len(patterns))
	for _, t := range patterns {
		s, err := typeFilter(prefix, t)
		if err != nil {
			return nil, err
		}
		filters = append(filters, s)
	}
	return filters, nil
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
	extra := ""
	// The route named default is every single-endpoint bridge's: naming it
	// on each line would say nothing.
	if r := get(publish.HeaderRoute); r != "" && r != schema.DefaultRoute {
		extra = "  route=" + r
	}
	if tid := schema.Headers(h).TraceID(); tid != "" {
		extra += "  trace=" + tid
	}
	fmt.Fprintf(out, "%s  %-34s %-38s %-30s webhook-id=%s  subject=%s%s\n", when, typ, id, obj, get("webhook-id"), subject, extra)
}
