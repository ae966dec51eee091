package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
)

const (
	pwNATS  = "Nats-PW_4f9c/@x"
	pwRedis = "Rd5-PW#x%2F77"
	tokNATS = "tokenAbC123"
)

func credEnv() map[string]string {
	return map[string]string{
		"HOOKBRIDGE_SECRETS":             testSecret0,
		"HOOKBRIDGE_BROKER":              "nats",
		"HOOKBRIDGE_NATS_URL":            "nats://hook:" + pwNATS + "@127.0.0.1:4222, " + tokNATS + "@10.0.0.2:4222",
		"HOOKBRIDGE_DEDUP":               "redis",
		"HOOKBRIDGE_REDIS_URL":           "rediss://default:" + pwRedis + "@redis.internal:6380/0",
		"HOOKBRIDGE_NATS_PASSWORD":       "separate-password",
		"HOOKBRIDGE_KAFKA_SASL_PASSWORD": "sasl-password",
	}
}

// forbiddenIn fails for every credential of credEnv found in text.
func forbiddenIn(t *testing.T, where, text string) {
	t.Helper()
	for _, f := range []string{pwNATS, "Nats-PW_4f9c", pwRedis, "Rd5-PW#x/77", "Rd5-PW", tokNATS, "separate-password", "sasl-password"} {
		if strings.Contains(text, f) {
			t.Errorf("%s contains %q:\n%s", where, f, text)
		}
	}
}

// The start-up configuration line shows every URL with its userinfo
// replaced, and still says where it connects.
func TestConfigLogRedactsURLCredentials(t *testing.T) {
	cfg, err := loadConfig(credEnv())
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	log := newLogger(cfg, stdio{err: &buf})
	log.Info().Interface("config", cfg.redacted()).Msg("starting")
	out := buf.String()
	forbiddenIn(t, "the config line", out)
	for _, want := range []string{"nats://REDACTED@127.0.0.1:4222", "REDACTED@10.0.0.2:4222", "rediss://REDACTED@redis.internal:6380/0"} {
		if !strings.Contains(out, want) {
			t.Errorf("the config line lacks %q:\n%s", want, out)
		}
	}
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("the config line is not JSON any more: %v", err)
	}
}

// Whatever writes a line, the credentials do not get through: errors of
// nats.go and go-redis echo the URL they were given.
func TestLogLinesRedactCredentials(t *testing.T) {
	env := credEnv()
	cfg, err := loadConfig(env)
	if err != nil {
		t.Fatal(err)
	}
	var errs []error
	_, err = redis.ParseURL(env["HOOKBRIDGE_REDIS_URL"]) // '#' cuts the URL: the error shows a part of the password
	errs = append(errs, err)
	_, err = redis.ParseURL("redis://default:" + pwNATS + "@redis.internal:notaport/0")
	errs = append(errs, err)
	_, err = nats.Connect("nats://hook:"+pwNATS+"@127.0.0.1:notaport", nats.Timeout(time.Second))
	errs = append(errs, err)
	_, err = nats.Connect("nats://"+tokNATS+"@[::1:4222", nats.Timeout(time.Second))
	errs = append(errs, err)
	for _, e := range errs {
		if e == nil {
			t.Fatal("expected a library error")
		}
		if !strings.Contains(e.Error(), "://") {
			t.Fatalf("%v: the library no longer echoes the URL; the case proves nothing", e)
		}
	}
	for _, format := range []string{"json", "console"} {
		cfg.LogFormat = format
		var buf bytes.Buffer
		log := newLogger(cfg, stdio{err: &buf})
		for _, e := range errs {
			log.Error().Err(e).Msg("start-up failed")
		}
		log.Warn().Str("password", env["HOOKBRIDGE_NATS_PASSWORD"]).Msgf("sasl %s", env["HOOKBRIDGE_KAFKA_SASL_PASSWORD"])
		log.Info().Msg("an unknown URL: amqp://someone:hunter22@mq:5672/vhost")
		forbiddenIn(t, format+" log", buf.String())
		if strings.Contains(buf.String(), "hunter22") {
			t.Errorf("%s log: the userinfo of an unconfigured URL got through:\n%s", format, buf.String())
		}
		if !strings.Contains(buf.String(), "amqp://REDACTED@mq:5672/vhost") {
			t.Errorf("%s log: the URL itself should stay readable:\n%s", format, buf.String())
		}
	}
}

// go-redis logs pool failures itself; they go through zerolog.
func TestRedisLogsRouted(t *testing.T) {
	var buf bytes.Buffer
	cfg, err := loadConfig(credEnv())
	if err != nil {
		t.Fatal(err)
	}
	routeRedisLogs(newLogger(cfg, stdio{err: &buf}))
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", Password: pwRedis, MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = c.Ping(ctx).Err()
	forbiddenIn(t, "redis log", buf.String())
	redis.SetLogger(redisLogger{zerolog.Nop()})
}

func TestRedactURLList(t *testing.T) {
	for in, want := range map[string]string{
		"nats://a:b@h:4222":                "nats://REDACTED@h:4222",
		"nats://tok@h:1,nats://h2:2":       "nats://REDACTED@h:1,nats://h2:2",
		"u:p@h:4222":                       "REDACTED@h:4222",
		"redis://:p/w@d@h:6379/0":          "redis://REDACTED@h:6379/0",
		"h1:9092,h2:9092":                  "h1:9092,h2:9092",
		"https://api.openai.com":           "https://api.openai.com",
		"":                                 "",
		"rediss://user:pa%40ss@r:6380/1?x": "rediss://REDACTED@r:6380/1?x",
	} {
		if got := redactURLList(in); got != want {
			t.Errorf("redactURLList(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRedactTextFindsURLsInProse(t *testing.T) {
	creds := credentials(map[string]string{"HOOKBRIDGE_REDIS_URL": "redis://:sl/ash@h:1/0"})
	for in, want := range map[string]string{
		`parse "nats://u:p@h:x": invalid port`:                       `parse "nats://REDACTED@h:x": invalid port`,
		"dial nats://u:p@h:1, then redis://:q@r:2/0.":                "dial nats://REDACTED@h:1, then redis://REDACTED@r:2/0.",
		`{"url":"nats://t@h:4222"}`:                                  `{"url":"nats://REDACTED@h:4222"}`,
		"mail user@example.com, site https://x.io/a@b":               "mail user@example.com, site https://x.io/a@b",
		`parse "redis://:sl/ash@h:1/0": invalid port`:                `parse "redis://REDACTED@h:1/0": invalid port`,
		"[nats://h:4222] and nats://u:p@[::1]:4222":                  "[nats://h:4222] and nats://REDACTED@[::1]:4222",
		`parse "redis://default:redis": invalid port`:                `parse "redis://default:REDACTED": invalid port`,
		"listening on nats://127.0.0.1:4222 and http://[::1]:9090/x": "listening on nats://127.0.0.1:4222 and http://[::1]:9090/x",
		"no URL here": "no URL here",
	} {
		if got := redactText(in, creds); got != want {
			t.Errorf("redactText(%q) = %q, want %q", in, got, want)
		}
	}
}
