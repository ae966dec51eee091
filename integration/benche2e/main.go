// Command benche2e is hookbridge's end-to-end benchmark (make bench-e2e): it
// starts a nats-server built from the module (and an in-process kfake Kafka
// cluster), runs hookbridge in several configurations and a minimal baseline
// handler side by side, alternating, drives each with 64 keep-alive
// connections of unique signed ~430-byte deliveries and prints medians.
//
//	go run ./integration/benche2e [-duration 10s] [-runs 3] [-conns 64] [-gen lean|send] [-only nats,kafka,gen] [-before BIN]
//	go run ./integration/benche2e baseline -addr 127.0.0.1:8081 -nats nats://… -secret whsec_…
//	go run ./integration/benche2e noop -addr 127.0.0.1:8081
//	go run ./integration/benche2e gen -url http://… -secret whsec_… [-conns 64 -duration 10s]
//
// Everything listens on loopback; every process it starts it stops by pid.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/hookbridge/hookbridge/integration/internal/netwait"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "baseline":
			os.Exit(runBaseline(os.Args[2:]))
		case "noop":
			os.Exit(runNoop(os.Args[2:]))
		case "gen":
			os.Exit(runGen(os.Args[2:]))
		}
	}
	os.Exit(runHarness(os.Args[1:]))
}

type options struct {
	duration time.Duration
	count    int
	runs     int
	conns    int
	gen      string
	only     map[string]bool
	natsBin  string
	workDir  string
	self     string
	hookbin  string
	secret   string
	modRoot  string
	verbose  bool
	warmup   time.Duration
	hookEnv  []string
	profile  string // directory for CPU profiles of bridge and broker, "" for none
	match    string // run only configurations whose name contains this
	before   string // another hookbridge binary to run beside this one, "" for none
}

func runHarness(args []string) int {
	fs := flag.NewFlagSet("benche2e", flag.ExitOnError)
	var o options
	var only string
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "measured time per run (lean generator)")
	fs.IntVar(&o.count, "count", 200_000, "deliveries per run with -gen send")
	fs.IntVar(&o.runs, "runs", 3, "runs per configuration (medians are reported)")
	fs.IntVar(&o.conns, "conns", 64, "keep-alive connections")
	fs.StringVar(&o.gen, "gen", "lean", "load generator: lean (built in, raw HTTP/1.1) or send (hookbridge send)")
	fs.StringVar(&only, "only", "gen,nats,kafka", "tables to produce: gen (generator check), nats, kafka")
	fs.StringVar(&o.natsBin, "nats-server", "", "nats-server binary (default: built from the module)")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "warm-up load before each measured run")
	fs.BoolVar(&o.verbose, "v", false, "print every run")
	fs.StringVar(&o.match, "match", "", "run only the configurations whose name contains this (the baseline always runs in the NATS table)")
	fs.StringVar(&o.profile, "profile", "", "write CPU and allocation profiles of the bridge and nats-server for each measured run into this directory")
	fs.StringVar(&o.before, "before", "", "a hookbridge binary built from an earlier commit: its configurations run in the same passes, for before → after tables")
	hookEnv := fs.String("bridge-env", "", "extra KEY=VALUE,… for the hookbridge processes (e.g. GOGC=100 to compare GC settings)")
	_ = fs.Parse(args)
	if *hookEnv != "" {
		o.hookEnv = strings.Split(*hookEnv, ",")
	}
	if o.profile != "" {
		if err := os.MkdirAll(o.profile, 0o755); err != nil {
			return fail(err)
		}
	}
	o.only = map[string]bool{}
	for _, s := range strings.Split(only, ",") {
		o.only[strings.TrimSpace(s)] = true
	}
	var err error
	if o.self, err = os.Executable(); err != nil {
		return fail(err)
	}
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return fail(fmt.Errorf("go env GOMOD: %w", err))
	}
	o.modRoot = filepath.Dir(strings.TrimSpace(string(out)))
	if o.workDir, err = os.MkdirTemp("", "benche2e"); err != nil {
		return fail(err)
	}
	defer os.RemoveAll(o.workDir)

	var key [32]byte
	_, _ = rand.Read(key[:])
	o.secret = "whsec_" + base64.StdEncoding.EncodeToString(key[:])

	// Interrupt: stop our children (each killed by pid in its own cleanup).
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if o.natsBin == "" {
		o.natsBin = filepath.Join(o.workDir, "nats-server")
		fmt.Fprintln(os.Stderr, "building nats-server from the module…")
		if err := goBuild(o.modRoot, o.natsBin, "github.com/nats-io/nats-server/v2"); err != nil {
			return fail(err)
		}
	}
	o.hookbin = filepath.Join(o.modRoot, "bin", "hookbridge")
	fmt.Fprintln(os.Stderr, "building bin/hookbridge…")
	if err := goBuild(o.modRoot, o.hookbin, "./cmd/hookbridge"); err != nil {
		return fail(err)
	}
	fmt.Printf("benche2e: %d CPUs, GOMAXPROCS unset, %d connections, generator %s, %s per run (+%s warm-up), %d runs, medians\n",
		numCPU(), o.conns, genDesc(&o), o.duration, o.warmup, o.runs)

	if o.only["gen"] {
		runTable(ctx, &o, "Generator check: no-op net/http server (reads the body, answers 200), no broker", []config{
			{name: "noop + lean gen", kind: "noop", gen: "lean"},
			{name: "noop + hookbridge send", kind: "noop", gen: "send"},
		}, "")
	}
	if o.only["nats"] {
		runTable(ctx, &o, "NATS JetStream (nats-server process, file store), 1 bridge", withBefore(&o, []config{
			{name: "hookbridge dedup=nats (defaults)", kind: "hookbridge", broker: "nats", dedup: "nats"},
			{name: "hookbridge dedup=nats, events 3h old", kind: "hookbridge", broker: "nats", dedup: "nats", age: 3 * time.Hour},
			{name: "hookbridge dedup=nats, 72h window (no KV)", kind: "hookbridge", broker: "nats", dedup: "nats",
				env: []string{"HOOKBRIDGE_NATS_DUPLICATE_WINDOW=72h"}},
			{name: "hookbridge dedup=memory", kind: "hookbridge", broker: "nats", dedup: "memory"},
			{name: "hookbridge dedup=off", kind: "hookbridge", broker: "nats", dedup: "off"},
			{name: "baseline (net/http+hmac+js async)", kind: "baseline", broker: "nats"},
		}), "baseline (net/http+hmac+js async)")
	}
	if o.only["kafka"] {
		runTable(ctx, &o, "Kafka (kfake, 3 brokers, in the harness process: its CPU is the broker column)", withBefore(&o, []config{
			{name: "hookbridge kafka dedup=memory", kind: "hookbridge", broker: "kafka", dedup: "memory"},
			{name: "hookbridge kafka dedup=off", kind: "hookbridge", broker: "kafka", dedup: "off"},
		}), "")
	}
	return 0
}

func genDesc(o *options) string {
	if o.gen == "send" {
		return fmt.Sprintf("hookbridge send (--count %d)", o.count)
	}
	return "lean (raw HTTP/1.1)"
}

func fail(err error) int {
	fmt.Fprintln(os.Stderr, "benche2e:", err)
	return 1
}

func goBuild(dir, out, pkg string) error {
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, pkg)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return cmd.Run()
}

// config is one column of a table.
type config struct {
	name   string
	kind   string // hookbridge, baseline, noop
	broker string // nats, kafka
	dedup  string
	gen    string        // overrides options.gen
	age    time.Duration // how old the generated events are
	bin    string        // the hookbridge binary; default options.hookbin
	env    []string      // extra environment of the hookbridge process
}

// withBefore adds, after each hookbridge configuration, the same one run
// with the -before binary, so both are measured in the same passes.
func withBefore(o *options, cfgs []config) []config {
	if o.before == "" {
		return cfgs
	}
	var out []config
	for _, c := range cfgs {
		out = append(out, c)
		if c.kind == "hookbridge" {
			b := c
			b.name, b.bin = "before: "+strings.TrimPrefix(c.name, "hookbridge "), o.before
			out = append(out, b)
		}
	}
	return out
}

// result of one run.
type result struct {
	rps, p50, p99, p999  float64
	cpuBridge, cpuBroker float64 // seconds during the measured window
	cpuGen               float64
	rssMiB               float64
	sysBridge, sysBroker float64 // read+write system calls during the measured window
	round                int     // which pass over the configurations
	sent, ok             int64
	errs                 string
}

func runTable(ctx context.Context, o *options, title string, cfgs []config, baseline string) {
	all := make([][]result, len(cfgs))
	for r := 0; r < o.runs && ctx.Err() == nil; r++ {
		for i, c := range cfgs {
			if ctx.Err() != nil {
				break
			}
			if o.match != "" && !strings.Contains(c.name, o.match) && c.name != baseline {
				continue
			}
			res, err := runOnce(ctx, o, c, r+1)
			if err != nil {
				fmt.Fprintf(os.Stderr, "  run %d %s: %v\n", r+1, c.name, err)
				continue
			}
			res.round = r
			all[i] = append(all[i], res)
			fmt.Fprintf(os.Stderr, "  run %d %-44s %8.0f req/s  p50 %6.2f  p99 %6.2f  p99.9 %6.2f ms  cpu bridge %5.2fs broker %5.2fs gen %5.2fs  rss %5.1f MiB  syscalls/req bridge %.2f broker %.2f %s\n",
				r+1, c.name, res.rps, res.p50, res.p99, res.p999, res.cpuBridge, res.cpuBroker, res.cpuGen, res.rssMiB,
				res.sysBridge/float64(max(res.sent, 1)), res.sysBroker/float64(max(res.sent, 1)), res.errs)
		}
	}
	fmt.Printf("\n%s\n", title)
	fmt.Printf("| %-44s | %8s | %11s | %6s | %6s | %7s | %9s | %9s | %9s | %8s | %8s | %7s | %7s | %s |\n",
		"configuration", "req/s", "req/s range", "p50 ms", "p99 ms", "p99.9ms", "µs bridge", "µs broker", "µs gen", "µs/req*", "peak RSS", "vs base", "cpu vs base", "p99 vs base")
	fmt.Printf("|%s\n", strings.Repeat("---|", 14))
	var base []result
	for i, c := range cfgs {
		if c.name == baseline {
			base = all[i]
		}
	}
	for i, c := range cfgs {
		rs := all[i]
		if len(rs) == 0 {
			if o.match != "" && !strings.Contains(c.name, o.match) {
				continue
			}
			fmt.Printf("| %-44s | no successful run |\n", c.name)
			continue
		}
		m := func(f func(result) float64) float64 { return median(rs, f) }
		rps := m(func(r result) float64 { return r.rps })
		lo, hi := minmax(rs, func(r result) float64 { return r.rps })
		p99 := m(func(r result) float64 { return r.p99 })
		ratio, cratio, pratio := "", "", ""
		if c.name != baseline {
			if rr, cr, pr, ok := pairedRatios(rs, base); ok {
				ratio, cratio, pratio = fmt.Sprintf("%.2f×", rr), fmt.Sprintf("%.2f×", cr), fmt.Sprintf("%.2f×", pr)
			}
		}
		rss := fmt.Sprintf("%.1f MiB", m(func(r result) float64 { return r.rssMiB }))
		fmt.Printf("| %-44s | %8.0f | %5.0f–%-5.0f | %6.2f | %6.2f | %7.2f | %9.1f | %9.1f | %9.1f | %8.1f | %8s | %7s | %7s | %s |\n",
			c.name, rps, lo, hi, m(func(r result) float64 { return r.p50 }), p99,
			m(func(r result) float64 { return r.p999 }),
			m(func(r result) float64 { return r.usBridge() }), m(func(r result) float64 { return r.usBroker() }),
			m(func(r result) float64 { return r.usGen() }), m(func(r result) float64 { return r.usBridge() + r.usBroker() }),
			rss, ratio, cratio, pratio)
	}
	fmt.Println("µs columns: CPU per request during the measured run, medians. (*) bridge + broker.")
	if baseline != "" {
		fmt.Println("vs base: median over passes of the req/s ratio to the baseline run of the same pass, so that a slow pass (the machine's speed drifts) counts for both.")
		fmt.Println("cpu vs base: the same for the CPU per request of bridge, broker and generator together (baseline's / this one's): what req/s would be if these three had the cores to themselves.")
	}
}

func (r result) usBridge() float64 { return r.cpuBridge / float64(max(r.sent, 1)) * 1e6 }
func (r result) usBroker() float64 { return r.cpuBroker / float64(max(r.sent, 1)) * 1e6 }
func (r result) usGen() float64    { return r.cpuGen / float64(max(r.sent, 1)) * 1e6 }
func (r result) usAll() float64    { return r.usBridge() + r.usBroker() + r.usGen() }

// pairedRatios is the median, over the passes in which both ran, of rs's
// req/s, total CPU per request (inverted) and p99 against those of base in
// the same pass.
func pairedRatios(rs, base []result) (rps, cpu, p99 float64, ok bool) {
	byRound := map[int]result{}
	for _, b := range base {
		byRound[b.round] = b
	}
	var rr, cr, pr []result
	for _, r := range rs {
		if b, found := byRound[r.round]; found && b.rps > 0 && b.p99 > 0 && r.usAll() > 0 {
			rr = append(rr, result{rps: r.rps / b.rps})
			cr = append(cr, result{rps: b.usAll() / r.usAll()})
			pr = append(pr, result{rps: r.p99 / b.p99})
		}
	}
	if len(rr) == 0 {
		return 0, 0, 0, false
	}
	get := func(r result) float64 { return r.rps }
	return median(rr, get), median(cr, get), median(pr, get), true
}

func median(rs []result, f func(result) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func minmax(rs []result, f func(result) float64) (float64, float64) {
	lo, hi := f(rs[0]), f(rs[0])
	for _, r := range rs[1:] {
		lo, hi = min(lo, f(r)), max(hi, f(r))
	}
	return lo, hi
}

// runOnce starts the broker and the server of c, warms up, measures, stops.
func runOnce(ctx context.Context, o *options, c config, run int) (result, error) {
	var res result
	dir, err := os.MkdirTemp(o.workDir, "run")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)

	var brokerPid int // 0: the broker is this process (kfake)
	var natsURL string
	var profURLs [][2]string // {pprof base URL, file suffix}
	var kafkaBrokers []string
	switch c.broker {
	case "nats":
		port, err := netwait.FreePort()
		if err != nil {
			return res, err
		}
		args := []string{"-a", "127.0.0.1", "-p", strconv.Itoa(port), "-js", "-sd", filepath.Join(dir, "js")}
		if o.profile != "" {
			pport, err := netwait.FreePort()
			if err != nil {
				return res, err
			}
			args = append(args, "-profile", strconv.Itoa(pport))
			profURLs = append(profURLs, [2]string{fmt.Sprintf("http://127.0.0.1:%d", pport), "broker"})
		}
		ns, err := startProc(o.natsBin, nil, filepath.Join(dir, "nats.log"), args...)
		if err != nil {
			return res, err
		}
		defer ns.stop()
		natsURL = fmt.Sprintf("nats://127.0.0.1:%d", port)
		if !netwait.WaitPort(fmt.Sprintf("127.0.0.1:%d", port), 10*time.Second) {
			return res, fmt.Errorf("nats-server did not start")
		}
		brokerPid = ns.cmd.Process.Pid
	case "kafka":
		kc, err := kfake.NewCluster(kfake.NumBrokers(3), kfake.ClusterID("benche2e"))
		if err != nil {
			return res, err
		}
		defer kc.Close()
		kafkaBrokers = kc.ListenAddrs()
		brokerPid = os.Getpid()
	}

	port, err := netwait.FreePort()
	if err != nil {
		return res, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	url := "http://" + addr + "/webhooks/openai"
	var srv *proc
	logf := filepath.Join(dir, "server.log")
	switch c.kind {
	case "hookbridge":
		aport, err := netwait.FreePort()
		if err != nil {
			return res, err
		}
		env := []string{
			"HOOKBRIDGE_SECRETS=" + o.secret,
			"HOOKBRIDGE_LISTEN_ADDR=" + addr,
			fmt.Sprintf("HOOKBRIDGE_ADMIN_ADDR=127.0.0.1:%d", aport),
			"HOOKBRIDGE_BROKER=" + c.broker,
			"HOOKBRIDGE_DEDUP=" + c.dedup,
			"HOOKBRIDGE_LOG_LEVEL=info",
			"HOOKBRIDGE_SHUTDOWN_DELAY=0s",
			"HOOKBRIDGE_DATA_DIR=" + filepath.Join(dir, "data"),
		}
		if o.profile != "" {
			env = append(env, "HOOKBRIDGE_PPROF=true")
			profURLs = append(profURLs, [2]string{fmt.Sprintf("http://127.0.0.1:%d", aport), "bridge"})
		}
		env = append(env, o.hookEnv...)
		env = append(env, c.env...)
		if natsURL != "" {
			env = append(env, "HOOKBRIDGE_NATS_URL="+natsURL)
		}
		if kafkaBrokers != nil {
			env = append(env, "HOOKBRIDGE_KAFKA_BROKERS="+strings.Join(kafkaBrokers, ","))
		}
		bin := o.hookbin
		if c.bin != "" {
			bin = c.bin
		}
		if srv, err = startProc(bin, env, logf, "serve"); err != nil {
			return res, err
		}
		defer srv.stop()
		if err := waitReady(fmt.Sprintf("http://127.0.0.1:%d/readyz", aport), 30*time.Second, srv); err != nil {
			return res, fmt.Errorf("%w; log:\n%s", err, tail(logf))
		}
	case "baseline":
		args := []string{"baseline", "-addr", addr, "-nats", natsURL, "-secret", o.secret}
		if o.profile != "" {
			pport, err := netwait.FreePort()
			if err != nil {
				return res, err
			}
			args = append(args, "-pprof", fmt.Sprintf("127.0.0.1:%d", pport))
			profURLs = append(profURLs, [2]string{fmt.Sprintf("http://127.0.0.1:%d", pport), "bridge"})
		}
		if srv, err = startProc(o.self, nil, logf, args...); err != nil {
			return res, err
		}
		defer srv.stop()
		if !netwait.WaitPort(addr, 20*time.Second) {
			return res, fmt.Errorf("baseline did not listen; log:\n%s", tail(logf))
		}
	case "noop":
		if srv, err = startProc(o.self, nil, logf, "noop", "-addr", addr); err != nil {
			return res, err
		}
		defer srv.stop()
		if !netwait.WaitPort(addr, 20*time.Second) {
			return res, fmt.Errorf("noop did not listen")
		}
	}

	// Warm-up with the lean generator (connections, JIT-free Go still has
	// caches, pools, the stream's first blocks).
	if o.warmup > 0 {
		if _, err := runGenProc(ctx, o, "lean", url, o.warmup, dir, c.age); err != nil {
			return res, fmt.Errorf("warm-up: %w", err)
		}
	}
	b0, n0 := cpuOf(srv.cmd.Process.Pid), cpuOf(brokerPid)
	bs0, ns0 := syscallsOf(srv.cmd.Process.Pid), syscallsOf(brokerPid)
	gen := o.gen
	if c.gen != "" {
		gen = c.gen
	}
	profDone := startProfiles(o, c, run, profURLs)
	g, err := runGenProc(ctx, o, gen, url, o.duration, dir, c.age)
	profDone()
	if err != nil {
		return res, err
	}
	res.cpuBridge = cpuOf(srv.cmd.Process.Pid) - b0
	res.sysBridge = syscallsOf(srv.cmd.Process.Pid) - bs0
	if brokerPid != 0 {
		res.sysBroker = syscallsOf(brokerPid) - ns0
	}
	if brokerPid != 0 {
		res.cpuBroker = cpuOf(brokerPid) - n0
	}
	res.rssMiB = float64(vmHWM(srv.cmd.Process.Pid)) / 1024
	res.rps, res.p50, res.p99, res.p999 = g.RPS, g.P50, g.P99, g.P999
	res.cpuGen = g.cpu
	res.sent, res.ok = g.Sent, g.OK
	if g.OK != g.Sent {
		res.errs = fmt.Sprintf("(%d not 2xx: %v)", g.Sent-g.OK, g.Status)
	}
	return res, nil
}

type genRun struct {
	genResult
	cpu float64
}

var (
	sendSummaryRe = regexp.MustCompile(`sent (\d+) in \S+: (\d+) req/s, (\d+) 2xx`)
	sendLatRe     = regexp.MustCompile(`p50 ([\d.]+)ms\s+p90 ([\d.]+)ms\s+p99 ([\d.]+)ms\s+p99.9 ([\d.]+)ms`)
)

func runGenProc(ctx context.Context, o *options, gen, url string, d time.Duration, dir string, age time.Duration) (genRun, error) {
	var g genRun
	var cmd *exec.Cmd
	if gen == "send" {
		cmd = exec.CommandContext(ctx, o.hookbin, "send", "--url", url, "--secret", o.secret,
			"--type", "realtime.call.incoming", "--count", strconv.Itoa(o.count),
			"--concurrency", strconv.Itoa(o.conns), "--quiet")
	} else {
		cmd = exec.CommandContext(ctx, o.self, "gen", "-url", url, "-secret", o.secret,
			"-conns", strconv.Itoa(o.conns), "-duration", d.String(), "-age", age.String())
	}
	cmd.Env = append(os.Environ(), "HOOKBRIDGE_DATA_DIR="+filepath.Join(dir, "nodev"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if cmd.ProcessState != nil {
		g.cpu = (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
	}
	if gen == "send" {
		s := stdout.String()
		m := sendSummaryRe.FindStringSubmatch(s)
		l := sendLatRe.FindStringSubmatch(s)
		if m == nil || l == nil {
			return g, fmt.Errorf("send: %v: %s%s", err, s, stderr.String())
		}
		g.Sent, _ = strconv.ParseInt(m[1], 10, 64)
		g.RPS, _ = strconv.ParseFloat(m[2], 64)
		g.OK, _ = strconv.ParseInt(m[3], 10, 64)
		g.P50, _ = strconv.ParseFloat(l[1], 64)
		g.P90, _ = strconv.ParseFloat(l[2], 64)
		g.P99, _ = strconv.ParseFloat(l[3], 64)
		g.P999, _ = strconv.ParseFloat(l[4], 64)
		if g.OK != g.Sent {
			g.Status = map[string]int64{"other": g.Sent - g.OK}
		}
		return g, nil
	}
	if err != nil {
		return g, fmt.Errorf("gen: %v: %s", err, stderr.String())
	}
	if err := json.Unmarshal(stdout.Bytes(), &g.genResult); err != nil {
		return g, fmt.Errorf("gen output: %v: %s", err, stdout.String())
	}
	return g, nil
}

// proc is a child process with its output in a file.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
}

func startProc(bin string, env []string, logPath string, args ...string) (*proc, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	p := &proc{cmd: cmd, done: make(chan struct{}), log: f}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p, nil
}

// stop sends SIGTERM to this process (by pid), then SIGKILL after 10s.
func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	p.log.Close()
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func waitReady(url string, within time.Duration, p *proc) error {
	cl := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if p.exited() {
			return fmt.Errorf("server exited during start-up")
		}
		resp, err := cl.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready within %s", url, within)
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// cpuOf returns user+system CPU seconds of pid from /proc/<pid>/stat.
// syscallsOf is the number of read and write system calls pid has made
// (/proc/<pid>/io syscr + syscw), 0 if unknown.
func syscallsOf(pid int) float64 {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0
	}
	var n float64
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ": "); ok && (k == "syscr" || k == "syscw") {
			x, _ := strconv.ParseFloat(v, 64)
			n += x
		}
	}
	return n
}

func cpuOf(pid int) float64 {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the parenthesised command name; utime and stime are the
	// 14th and 15th fields of the whole line.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	f := strings.Fields(s[i+2:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / clockTicks
}

const clockTicks = 100 // USER_HZ on Linux

// vmHWM returns the peak RSS of pid in KiB.
func vmHWM(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

func numCPU() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return max(1, strings.Count(string(b), "processor\t:"))
}

// startProfiles fetches a CPU profile from each pprof endpoint for the
// measured window (less a second, so that it ends inside the load) and
// returns a function that waits for them, then saves each process's
// allocation profile (allocations since it started: warm-up and run).
func startProfiles(o *options, c config, run int, urls [][2]string) func() {
	if o.profile == "" || len(urls) == 0 {
		return func() {}
	}
	secs := max(int(o.duration/time.Second)-1, 1)
	slug := strings.NewReplacer(" ", "-", "(", "", ")", "", "=", "-", "+", "-", "/", "-", ",", "", ":", "").Replace(c.name)
	var wg sync.WaitGroup
	for _, u := range urls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			path := filepath.Join(o.profile, fmt.Sprintf("%s-run%d-%s.pprof", slug, run, u[1]))
			if err := fetchTo(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", u[0], secs), path); err != nil {
				fmt.Fprintf(os.Stderr, "  profile %s: %v\n", path, err)
			}
		}()
	}
	return func() {
		wg.Wait()
		for _, u := range urls {
			path := filepath.Join(o.profile, fmt.Sprintf("%s-run%d-%s-allocs.pprof", slug, run, u[1]))
			if err := fetchTo(u[0]+"/debug/pprof/allocs", path); err != nil {
				fmt.Fprintf(os.Stderr, "  profile %s: %v\n", path, err)
			}
		}
	}
}

func fetchTo(url, path string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
