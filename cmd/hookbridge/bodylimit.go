package main

import (
	"fmt"

	"github.com/rs/zerolog"
)

// messageHeaderRoom is what a message on the bus carries besides the body:
// the forwarded webhook headers (net/http bounds a request's headers by the
// public server's MaxHeaderBytes, 64 KiB) and hookbridge's own. The embedded
// server and the streams hookbridge creates allow the body limit plus this.
const messageHeaderRoom = 64 << 10

// fitBodyLimit makes sure that a body of HOOKBRIDGE_MAX_BODY_BYTES, with its
// headers, fits in the largest message the broker accepts (brokerMax; 0 =
// unknown). Otherwise every such delivery would be answered 503 and retried
// by OpenAI for 72 hours. A limit the operator set is never lowered: start-up
// fails, saying what to change. The default is lowered with a warning, so
// that a broker with default settings works out of the box, answering 413 to
// the (rare) bodies between the two.
func fitBodyLimit(cfg *config, brokerMax int64, broker string, log zerolog.Logger) error {
	if brokerMax <= 0 {
		return nil
	}
	fit := brokerMax - messageHeaderRoom
	if cfg.MaxBodyBytes <= fit {
		return nil
	}
	if cfg.maxBodySet || fit < 1024 {
		return fmt.Errorf("HOOKBRIDGE_MAX_BODY_BYTES=%d plus %d bytes of room for headers exceeds the largest message %s accepts (%d bytes): "+
			"larger deliveries would be answered 503 and retried for 72 hours; set HOOKBRIDGE_MAX_BODY_BYTES to at most %d, or raise the broker's limit (%s)",
			cfg.MaxBodyBytes, messageHeaderRoom, broker, brokerMax, max(fit, 0), brokerLimitName(broker))
	}
	log.Warn().Int64("max_body_bytes", fit).Int64("default", cfg.MaxBodyBytes).Int64("broker_max_message_bytes", brokerMax).
		Msgf("HOOKBRIDGE_MAX_BODY_BYTES lowered from its default to fit the largest message %s accepts; larger bodies get 413 (raise the broker's %s to accept them)",
			broker, brokerLimitName(broker))
	cfg.MaxBodyBytes = fit
	return nil
}

func brokerLimitName(broker string) string {
	if broker == "kafka" {
		return "message.max.bytes / the topic's max.message.bytes"
	}
	return "max_payload"
}
