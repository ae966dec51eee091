package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hookbridge/hookbridge/ingest"
	"github.com/hookbridge/hookbridge/schema"
)

// genResult is what the lean generator prints (one JSON line on stdout).
type genResult struct {
	Sent    int64            `json:"sent"`
	OK      int64            `json:"ok"`
	Errors  int64            `json:"errors"`
	Elapsed float64          `json:"elapsed_s"`
	RPS     float64          `json:"rps"`
	P50     float64          `json:"p50_ms"`
	P90     float64          `json:"p90_ms"`
	P99     float64          `json:"p99_ms"`
	P999    float64          `json:"p999_ms"`
	Max     float64          `json:"max_ms"`
	Status  map[string]int64 `json:"status"`
}

// runGen is the lean load generator: raw HTTP/1.1 over conns keep-alive
// connections, each delivery signed with a fresh timestamp and a unique
// webhook-id and event id (same length, so every body has the same size).
// Events are created age before the run starts: 0, as OpenAI sends them
// right after they happen (the bridge's window path), or older than the
// stream's duplicate window (its KV claim path). Bounded by duration and by
// count, whichever ends first.
func runGen(args []string) int {
	fs := flag.NewFlagSet("gen", flag.ExitOnError)
	target := fs.String("url", "", "webhook URL")
	secret := fs.String("secret", "", "whsec_ secret")
	conns := fs.Int("conns", 64, "connections")
	dur := fs.Duration("duration", 10*time.Second, "how long to send")
	count := fs.Int64("count", 0, "stop after this many requests (0: duration only)")
	typ := fs.String("type", string(schema.RealtimeCallIncoming), "sample event type")
	age := fs.Duration("age", 0, "how long before the run the events were created")
	_ = fs.Parse(args)

	u, err := url.Parse(*target)
	if err != nil || u.Host == "" {
		fmt.Fprintln(os.Stderr, "gen: bad --url")
		return 2
	}
	sec, err := ingest.ParseSecret(*secret)
	if err == nil {
		_, err = ingest.NewSigner(sec)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		return 2
	}
	sample, ok := schema.Sample(schema.Type(*typ))
	if !ok {
		fmt.Fprintln(os.Stderr, "gen: unknown type")
		return 2
	}
	ev, err := schema.Parse(sample)
	if err != nil || ev.ID == "" {
		fmt.Fprintln(os.Stderr, "gen: sample has no id")
		return 2
	}
	created := []byte(`"created_at":` + strconv.FormatInt(ev.CreatedAt, 10))
	at := []byte(`"created_at":` + strconv.FormatInt(time.Now().Add(-*age).Unix(), 10))
	if len(at) != len(created) || !bytes.Contains(sample, created) {
		fmt.Fprintln(os.Stderr, "gen: cannot set the sample's created_at")
		return 2
	}
	sample = bytes.Replace(sample, created, at, 1)
	idAt := bytes.Index(sample, []byte(`"`+ev.ID+`"`)) + 1 + len("evt_")
	idLen := len(ev.ID) - len("evt_")

	var runTag [6]byte
	_, _ = rand.Read(runTag[:])
	tag := hex.EncodeToString(runTag[:])

	var (
		seq             atomic.Int64
		sent, ok2, errs atomic.Int64
		wg              sync.WaitGroup
		mu              sync.Mutex
		lats            []time.Duration
		status          = map[string]int64{}
	)
	start := time.Now()
	deadline := start.Add(*dur)
	for range *conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 1<<14)
			st := map[string]int64{}
			body := slices.Clone(sample)
			req := make([]byte, 0, 1024+len(body))
			signer, _ := ingest.NewSigner(sec)
			var c net.Conn
			var br *bufio.Reader
			for time.Now().Before(deadline) {
				n := seq.Add(1)
				if *count > 0 && n > *count {
					break
				}
				if c == nil {
					var err error
					if c, err = net.DialTimeout("tcp", u.Host, 5*time.Second); err != nil {
						errs.Add(1)
						sent.Add(1)
						time.Sleep(10 * time.Millisecond)
						continue
					}
					br = bufio.NewReaderSize(c, 4096)
				}
				// Unique ids: run tag + sequence, hex, padded to the sample's length.
				uniq := fmt.Appendf(nil, "%s%0*x", tag, idLen-len(tag), n)
				copy(body[idAt:idAt+idLen], uniq)
				whID := "wh_" + string(uniq)
				ts := strconv.FormatInt(time.Now().Unix(), 10)
				sig := signer.Sign(whID, ts, body)
				req = req[:0]
				req = append(req, "POST "...)
				req = append(req, u.RequestURI()...)
				req = append(req, " HTTP/1.1\r\nHost: "...)
				req = append(req, u.Host...)
				req = append(req, "\r\nContent-Type: application/json\r\nUser-Agent: benche2e\r\nContent-Length: "...)
				req = strconv.AppendInt(req, int64(len(body)), 10)
				req = append(req, "\r\nwebhook-id: "...)
				req = append(req, whID...)
				req = append(req, "\r\nwebhook-timestamp: "...)
				req = append(req, ts...)
				req = append(req, "\r\nwebhook-signature: "...)
				req = append(req, sig...)
				req = append(req, "\r\n\r\n"...)
				req = append(req, body...)

				t0 := time.Now()
				_ = c.SetDeadline(t0.Add(10 * time.Second))
				code, closeConn, err := roundTrip(c, br, req)
				d := time.Since(t0)
				sent.Add(1)
				if err != nil {
					errs.Add(1)
					st["error"]++
					c.Close()
					c = nil
					continue
				}
				lat = append(lat, d)
				st[strconv.Itoa(code)]++
				if code >= 200 && code < 300 {
					ok2.Add(1)
				}
				if closeConn {
					c.Close()
					c = nil
				}
			}
			if c != nil {
				c.Close()
			}
			mu.Lock()
			lats = append(lats, lat...)
			for k, v := range st {
				status[k] += v
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(lats)
	pct := func(q float64) float64 {
		if len(lats) == 0 {
			return 0
		}
		return float64(lats[int(q*float64(len(lats)-1))]) / 1e6
	}
	res := genResult{
		Sent: sent.Load(), OK: ok2.Load(), Errors: errs.Load(), Elapsed: elapsed.Seconds(),
		RPS: float64(sent.Load()) / elapsed.Seconds(),
		P50: pct(.5), P90: pct(.9), P99: pct(.99), P999: pct(.999), Max: pct(1), Status: status,
	}
	_ = json.NewEncoder(os.Stdout).Encode(res)
	return 0
}

// roundTrip writes req and reads one HTTP/1.1 response (Content-Length
// bodies only, which is what net/http sends for these small answers).
func roundTrip(c net.Conn, br *bufio.Reader, req []byte) (code int, closeConn bool, err error) {
	if _, err = c.Write(req); err != nil {
		return 0, false, err
	}
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, false, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return 0, false, errors.New("bad status line")
	}
	code, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, false, err
	}
	clen := -1
	for range 100 {
		h, err := br.ReadSlice('\n')
		if err != nil {
			return 0, false, err
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			break
		}
		k, v, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			continue
		}
		v = bytes.TrimSpace(v)
		switch {
		case bytes.EqualFold(k, []byte("Content-Length")):
			clen, _ = strconv.Atoi(string(v))
		case bytes.EqualFold(k, []byte("Connection")) && bytes.EqualFold(v, []byte("close")):
			closeConn = true
		case bytes.EqualFold(k, []byte("Transfer-Encoding")):
			return 0, false, errors.New("chunked response not supported")
		}
	}
	if clen < 0 {
		return 0, false, errors.New("no Content-Length")
	}
	if _, err := br.Discard(clen); err != nil {
		return 0, false, err
	}
	return code, closeConn, nil
}

// secretKey decodes a whsec_ secret as the bridge does (raw bytes otherwise).
func secretKey(s string) ([]byte, error) {
	if b64, ok := cutPrefix(s, "whsec_"); ok {
		return base64.StdEncoding.DecodeString(b64)
	}
	if s == "" {
		return nil, errors.New("no secret")
	}
	return []byte(s), nil
}

func cutPrefix(s, p string) (string, bool) {
	if len(s) >= len(p) && s[:len(p)] == p {
		return s[len(p):], true
	}
	return s, false
}

var _ = io.Discard
