package main

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
)

const secretUsage = `Usage: hookbridge secret new [--bytes N]

Prints a fresh signing secret, whsec_ followed by N random bytes in standard
base64, for local setups and tests (OpenAI issues the secrets of real
endpoints). For example:

  hookbridge secret new > data/secrets
  export HOOKBRIDGE_SECRETS="$(hookbridge secret new)"

Flags:
`

// Standard Webhooks asks for secrets of 24 to 64 random bytes; 32 is what
// OpenAI's secrets decode to.
const (
	secretMinBytes     = 24
	secretMaxBytes     = 64
	secretDefaultBytes = 32
)

func runSecret(args []string, io stdio) int {
	if len(args) == 0 || args[0] != "new" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprint(io.out, secretUsage)
			return 0
		}
		fmt.Fprint(io.err, secretUsage)
		return 2
	}
	fs := flag.NewFlagSet("secret new", flag.ContinueOnError)
	fs.SetOutput(io.err)
	n := fs.Int("bytes", secretDefaultBytes, fmt.Sprintf("random bytes in the secret (%d to %d)", secretMinBytes, secretMaxBytes))
	fs.Usage = func() { fmt.Fprint(io.err, secretUsage); fs.PrintDefaults() }
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(io.err, "hookbridge secret new: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *n < secretMinBytes || *n > secretMaxBytes {
		fmt.Fprintf(io.err, "hookbridge secret new: --bytes %d is not between %d and %d\n", *n, secretMinBytes, secretMaxBytes)
		return 2
	}
	s, err := newSecret(*n)
	if err != nil {
		fmt.Fprintf(io.err, "hookbridge secret new: %v\n", err)
		return 1
	}
	fmt.Fprintln(io.out, s)
	return 0
}

// newSecret returns whsec_ followed by n random bytes in standard base64.
func newSecret(n int) (string, error) {
	key := make([]byte, n)
	if _, err := rand.Read(key); err != nil {
		return "", err
	}
	return "whsec_" + base64.StdEncoding.EncodeToString(key), nil
}
