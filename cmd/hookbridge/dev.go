package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/rs/zerolog"
)

// devState is what `serve --dev` tells `send` and `tail` through
// <data dir>/dev.json, so that the quick start works verbatim even when it
// had to move the embedded NATS server off a taken port.
//
// `make up` writes the same file for the compose stack, with the addresses a
// client on the host uses: KafkaBrokers when the bridge publishes to Kafka.
type devState struct {
	WebhookURL   string `json:"webhook_url"`
	AdminURL     string `json:"admin_url,omitempty"`
	NATSURL      string `json:"nats_url,omitempty"`
	KafkaBrokers string `json:"kafka_brokers,omitempty"`
	SecretFile   string `json:"secret_file"`

	dir   string
	notes []string
}

const (
	devSecretFile = "dev-secret"
	devStateFile  = "dev.json"
)

// devEnv is what dev mode reads of the environment contract.
type devEnv struct {
	Endpoint
	ListenEnv
	MessageEnv
	EmbeddedEnv
	DataEnv
}

// prepareDev adjusts environ for local development: a generated secret when
// none is configured, a free port instead of a taken default, console logs,
// and no shutdown delay. It never overrides what the user set explicitly.
func prepareDev(environ map[string]string) (*devState, error) {
	e, err := parseEnv[devEnv](environ)
	if err != nil {
		return nil, err
	}
	st := &devState{dir: e.DataDir}
	if err := os.MkdirAll(st.dir, 0o700); err != nil {
		return nil, fmt.Errorf("HOOKBRIDGE_DATA_DIR: %w", err)
	}
	// Routes bring their own secrets: a generated one beside them would be
	// the single endpoint that routes replace.
	if !e.secretsConfigured(environ) && !routesConfigured(environ) {
		path := filepath.Join(st.dir, devSecretFile)
		secret, err := loadOrCreateDevSecret(path)
		if err != nil {
			return nil, err
		}
		environ[envPrefix+"SECRETS"] = secret
		st.SecretFile = path
		st.notes = append(st.notes, "using the development secret in "+path)
	}
	// A taken default moves to port 0 on loopback: the kernel picks a free
	// port when the listener opens, so two moved listeners never collide, and
	// serve reports where they ended up (the log line, dev.json).
	ports := []struct{ name, addr string }{{"LISTEN_ADDR", e.ListenAddr}, {"ADMIN_ADDR", e.AdminAddr}}
	if e.Broker == "embedded" {
		ports = append(ports, struct{ name, addr string }{"EMBEDDED_NATS_ADDR", e.EmbeddedAddr})
	}
	for _, d := range ports {
		if environ[envPrefix+d.name] != "" || portFree(d.addr) {
			continue
		}
		environ[envPrefix+d.name] = "127.0.0.1:0"
		st.notes = append(st.notes, fmt.Sprintf("%s is taken, so HOOKBRIDGE_%s uses a free port (see below)", d.addr, d.name))
	}
	devLoopback(environ, e.ListenEnv)
	if environ[envPrefix+"LOG_FORMAT"] == "" {
		environ[envPrefix+"LOG_FORMAT"] = "console"
	}
	if environ[envPrefix+"SHUTDOWN_DELAY"] == "" {
		environ[envPrefix+"SHUTDOWN_DELAY"] = "0s"
	}
	return st, nil
}

// devLoopback binds the listeners the user did not set to 127.0.0.1, on
// their default ports: dev mode serves a generated secret and an
// unauthenticated broker, which nothing beyond this host should reach. (The
// embedded NATS server's default is loopback already.)
func devLoopback(environ map[string]string, defaults ListenEnv) {
	for name, addr := range map[string]string{"LISTEN_ADDR": defaults.ListenAddr, "ADMIN_ADDR": defaults.AdminAddr} {
		if environ[envPrefix+name] == "" {
			_, port, _ := net.SplitHostPort(addr)
			environ[envPrefix+name] = net.JoinHostPort("127.0.0.1", port)
		}
	}
}

func loadOrCreateDevSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	secret, err := newSecret(secretDefaultBytes)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		return "", err
	}
	return secret, nil
}

func portFree(addr string) bool {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

// announce writes dev.json and prints how to try the bridge.
func (st *devState) announce(log zerolog.Logger) error {
	for _, n := range st.notes {
		log.Warn().Msg("dev: " + n)
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	log.Info().Msgf("dev: webhooks at %s, admin (health, metrics) at %s, workers connect to %s\n\n"+
		"    try it:  make send          (or: go run ./cmd/hookbridge send --all)\n"+
		"    watch:   make tail          (or: go run ./cmd/hookbridge tail)\n", st.WebhookURL, st.AdminURL, st.NATSURL)
	return os.WriteFile(filepath.Join(st.dir, devStateFile), b, 0o600)
}

// withdraw removes dev.json when the dev bridge stops, so that send and tail
// no longer aim at it (at a compose stack started later, say).
func (st *devState) withdraw() {
	_ = os.Remove(filepath.Join(st.dir, devStateFile))
}

// readDevState returns what a running `serve --dev` or `make up` announced
// in dir, if anything.
func readDevState(dir string) (*devState, bool) {
	b, err := os.ReadFile(filepath.Join(dir, devStateFile))
	if err != nil {
		return nil, false
	}
	var st devState
	if json.Unmarshal(b, &st) != nil {
		return nil, false
	}
	return &st, true
}
