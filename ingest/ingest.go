// Package ingest is hookbridge's HTTP side: it verifies OpenAI webhook
// signatures exactly as openai-go does, deduplicates deliveries on webhook-id,
// and maps every outcome to the status code OpenAI's retry logic expects.
//
// It defines the small interfaces it needs from the rest of the system
// (Publisher, Deduper); the broker implementations live in package publish and
// are wired together by cmd/hookbridge.
package ingest

import (
	"context"

	"github.com/hookbridge/hookbridge/schema"
)

// Publisher delivers a verified webhook to a broker. Publish returns nil only
// after the broker has acknowledged the message durably; it must be safe for
// concurrent use and must give up when ctx is done.
type Publisher interface {
	Publish(ctx context.Context, d *schema.Delivery) error
}

// ClaimStatus is the state of a webhook-id in a Deduper.
type ClaimStatus int

const (
	// ClaimNew means the caller now owns the id and must Complete or Release it.
	ClaimNew ClaimStatus = iota
	// ClaimInFlight means another request holds an unexpired claim on the id.
	ClaimInFlight
	// ClaimDone means the id was published within the dedup TTL.
	ClaimDone
)

func (s ClaimStatus) String() string {
	switch s {
	case ClaimNew:
		return "new"
	case ClaimInFlight:
		return "in_flight"
	case ClaimDone:
		return "done"
	}
	return "unknown"
}

// Deduper remembers which webhook-ids have been published, so that OpenAI's
// retries and concurrent duplicate deliveries are published at most once.
//
// The protocol is claim → publish → Complete, or Release when the publish
// failed so that the sender's retry can try again. A claim that is neither
// completed nor released expires after a lease, so a crashed replica cannot
// block an id forever.
type Deduper interface {
	Claim(ctx context.Context, webhookID string) (ClaimStatus, error)
	Complete(ctx context.Context, webhookID string) error
	Release(ctx context.Context, webhookID string) error
}
