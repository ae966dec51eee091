// Command hookbridge receives OpenAI webhooks, verifies them, and publishes
// each event to NATS JetStream or Kafka before answering 2xx.
//
//	hookbridge [serve]     run the bridge (configured from HOOKBRIDGE_* variables)
//	hookbridge send        sign and POST sample events (also a load generator)
//	hookbridge verify      check a captured delivery offline
//	hookbridge tail        print events as they arrive on the bus
//	hookbridge probe       container healthcheck against the admin listener
//	hookbridge secret new  print a fresh whsec_ secret for local setups and tests
//	hookbridge version     print the version
package main

import (
	"fmt"
	"io"
	"os"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// stdio is what every subcommand reads and writes, the environment
// included, so tests can run them in-process.
type stdio struct {
	in       io.Reader
	out, err io.Writer
	env      map[string]string
}

func main() {
	os.Exit(run(os.Args[1:], stdio{os.Stdin, os.Stdout, os.Stderr, environMap(os.Environ())}))
}

const usage = `hookbridge: OpenAI webhooks → NATS JetStream / Kafka

Usage:
  hookbridge [serve]    run the bridge; configuration from HOOKBRIDGE_* variables
  hookbridge send       sign and POST sample events (--help for flags)
  hookbridge verify     check a captured delivery offline (--help for flags)
  hookbridge tail       print events arriving on the bus (--help for flags)
  hookbridge secret new print a fresh whsec_ signing secret (local setups, tests)
  hookbridge version    print the version

Run "hookbridge serve --help" for the configuration variables.
`

// run dispatches to a subcommand and returns the process exit code:
// 0 success, 1 failure, 2 usage error.
func run(args []string, io stdio) int {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return runServe(args, io)
	case "send":
		return runSend(args, io)
	case "verify":
		return runVerify(args, io)
	case "tail":
		return runTail(args, io)
	case "probe":
		return runProbe(args, io)
	case "secret":
		return runSecret(args, io)
	case "version":
		fmt.Fprintln(io.out, "hookbridge", version)
		return 0
	case "help":
		fmt.Fprint(io.out, usage)
		return 0
	}
	fmt.Fprintf(io.err, "hookbridge: unknown command %q\n\n%s", cmd, usage)
	return 2
}
