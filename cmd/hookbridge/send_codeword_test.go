package main

import (
	"encoding/json"
	"testing"
)

// TestCodeWord checks the fast path of send's response parsing against the
// JSON decoding it replaces, on the bridge's replies and on look-alikes.
func TestCodeWord(t *testing.T) {
	for _, body := range []string{
		`{"status":"published"}` + "\n",
		`{"status":"duplicate"}`,
		`{"error":"unavailable","message":"broker did not acknowledge the event"}` + "\n",
		`{"error":"bad_request","message":"a \"quoted\" \\ thing"}` + "\n",
		`{"status":"deadlettered","message":"verified but not routable (not_json); kept"}` + "\n",
		`{"error":"x","message":"m","status":"y"}`,
		`{"status":"a","error":"b"}`,
		`{"status":"caf\u00e9"}`,
		`{"status":"é"}`,
		`{"status":"x"} trailing`,
		`{"error":"x","message":"unterminated}`,
		` {"status":"published"}`,
		`{"status": "published"}`,
		`not json`, ``, `{}`,
	} {
		var r struct {
			Status string `json:"status"`
			Error  string `json:"error"`
		}
		_ = json.Unmarshal([]byte(body), &r)
		w, ok := codeWord([]byte(body))
		if ok && string(w) != r.Status+r.Error {
			t.Errorf("codeWord(%s) = %q, JSON gives %q", body, w, r.Status+r.Error)
		}
	}
	if w, ok := codeWord([]byte(`{"status":"published"}` + "\n")); !ok || string(w) != "published" {
		t.Errorf("fast path missed the bridge's own reply: %q %v", w, ok)
	}
}
