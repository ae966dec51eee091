package main

import (
	"fmt"

	"github.com/rs/zerolog"
)

// maxConcurrentStreams bounds the requests one HTTP/2 connection carries at
// once: RFC 9113's recommended minimum, far above what one sender needs
// (net/http would allow 250).
const maxConcurrentStreams = 100

// messageHeaderRoom is the most a message can carry besides the body: the
// forwarded webhook headers are bounded by the public server's
// MaxHeaderBytes. The embedded server, the streams hookbridge creates and the
// Kafka writer allow the body limit plus this.
const messageHeaderRoom = 64 << 10

// fitHeaderRoom is the room fitBodyLimit keeps beside the body in a broker
// whose limit hookbridge does not set: hookbridge's own headers and the
// forwarded webhook headers come to about 1 KiB for OpenAI's deliveries.
// Keeping the full messageHeaderRoom would take 64 KiB off the default body
// limit on every broker left at its default 1 MiB, to cover requests whose
// headers only the holder of the signing secret could make that large.
const fitHeaderRoom = 16 << 10

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
	fit := brokerMax - fitHeaderRoom
	if cfg.MaxBodyBytes <= fit {
		return nil
	}
	if cfg.maxBodySet || fit < 1024 {
		return fmt.Errorf("HOOKBRIDGE_MAX_BODY_BYTES=%d plus %d bytes of room for headers exceeds the largest message %s accepts (%d bytes): "+
			"larger deliveries would be answered 503 and retried for 72 hours; set HOOKBRIDGE_MAX_BODY_BYTES to at most %d, or raise the broker's limit (%s)",
			cfg.MaxBodyBytes, fitHeaderRoom, broker, brokerMax, max(fit, 0), brokerLimitName(broker))
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
