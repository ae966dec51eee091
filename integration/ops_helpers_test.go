package integration

// Helpers of the operability tests (ops_*_test.go).

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// opsSecret is a freshly generated signing secret (test only).
type opsSecret struct {
	Text string // whsec_…
}

func newOpsSecret(t testing.TB) opsSecret {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return opsSecret{Text: "whsec_" + base64.StdEncoding.EncodeToString(k)}
}

// opsPost signs d with s at the current time, adds hdr, and POSTs it with
// client.
func opsPost(client *http.Client, url string, s opsSecret, d delivery, hdr map[string]string) result {
	return signedPost(client, url, s.Text, d, time.Now().Unix(), func(req *http.Request) {
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
	})
}

// opsWriteFile replaces path atomically (write a sibling, rename), as
// Kubernetes and careful tools do.
func opsWriteFile(t testing.TB, path string, b []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// opsMetric scrapes adminURL/metrics and returns the value of the series
// written exactly as series (e.g. `x_total{a="b"}`), or -1 if absent.
func opsMetric(t testing.TB, adminURL, series string) float64 {
	t.Helper()
	resp, err := http.Get(adminURL + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				t.Fatalf("metric %s: %q", series, line)
			}
			return v
		}
	}
	return -1
}

// opsWaitMetric polls until cond holds for the series' value, bounded.
func opsWaitMetric(t testing.TB, adminURL, series string, within time.Duration, cond func(float64) bool) bool {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if cond(opsMetric(t, adminURL, series)) {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}
