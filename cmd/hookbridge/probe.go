package main

import (
	"fmt"
	"net/http"
	"time"
)

// runProbe is the container healthcheck: distroless images have no shell or
// curl, so the binary checks its own admin endpoint. Exit 0 iff 2xx.
func runProbe(args []string, io stdio) int {
	if len(args) != 1 {
		fmt.Fprintln(io.err, "Usage: hookbridge probe URL   (e.g. http://127.0.0.1:9090/readyz); exit 0 iff the answer is 2xx")
		return 2
	}
	c := &http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get(args[0])
	if err != nil {
		fmt.Fprintf(io.err, "probe: %v\n", err)
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		fmt.Fprintf(io.err, "probe: %s\n", resp.Status)
		return 1
	}
	return 0
}
