package main

import (
	"strconv"

	"github.com/rs/zerolog"

	"github.com/hookbridge/hookbridge/ingest"
)

// warnShortSecrets logs, by position and never by value, every unprefixed
// secret shorter than a whsec_ key may be: accepted as OpenAI's SDKs accept
// it, but easier to guess.
func warnShortSecrets(secrets []ingest.Secret, log zerolog.Logger) {
	for i, s := range secrets {
		if s.ShortRaw() {
			log.Warn().Int("secret", i+1).
				Msg("signing secret #" + strconv.Itoa(i+1) + " has no whsec_ prefix and is shorter than 24 bytes: it is used as the HMAC key as it is, and is weak; use the whsec_… secret OpenAI shows for the endpoint")
		}
	}
}
