package schema_test

import (
	"fmt"
	"log"

	"github.com/hookbridge/hookbridge/schema"
)

// A worker receives the raw OpenAI body as the message payload, parses the
// envelope and switches on the typed data.
func ExampleParse() {
	msg := []byte(`{"object":"event","id":"evt_6a1f4a9d1e9f8190023d11e463f10991","type":"batch.completed","created_at":1780435613,"data":{"id":"batch_6a1f2c251405819035294e8263828686"}}`)

	ev, err := schema.Parse(msg)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ev.Type, ev.ID, ev.Time().Format("2006-01-02 15:04:05"))

	data, err := ev.DecodeData()
	if err != nil {
		log.Fatal(err)
	}
	switch d := data.(type) {
	case *schema.ResourceData:
		fmt.Println("fetch", d.ID)
	case map[string]any:
		fmt.Println("a type this worker does not know yet:", d)
	}
	// Output:
	// batch.completed evt_6a1f4a9d1e9f8190023d11e463f10991 2026-06-02 21:26:53
	// fetch batch_6a1f2c251405819035294e8263828686
}

// A worker subscribed to openai.realtime.call.incoming knows the data it
// gets and decodes it directly.
func ExampleDecodeDataAs() {
	msg := []byte(`{"object":"event","id":"evt_6a23311d1a668190335d6b0aa8f9c01c","type":"realtime.call.incoming","created_at":1780691229,"data":{"call_id":"rtc_6a23311c38e08190f7a445f776c52abf","sip_headers":[{"name":"From","value":"<sip:+14155550123@pstn.example.com>;tag=7f3c"},{"name":"To","value":"<sip:+18005550199@sip.api.openai.com>"}],"sip_media_security":"srtp"}}`)

	ev, err := schema.Parse(msg)
	if err != nil {
		log.Fatal(err)
	}
	call, err := schema.DecodeDataAs[schema.RealtimeCallIncomingData](ev)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("accept", call.CallID, "secure:", call.SIPMediaSecurity == schema.SIPMediaSRTP)
	for _, h := range call.SIPHeaders {
		fmt.Printf("%s: %s\n", h.Name, h.Value)
	}
	// Output:
	// accept rtc_6a23311c38e08190f7a445f776c52abf secure: true
	// From: <sip:+14155550123@pstn.example.com>;tag=7f3c
	// To: <sip:+18005550199@sip.api.openai.com>
}
