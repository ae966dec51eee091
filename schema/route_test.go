package schema

import "testing"

func TestDedupKeyPerRoute(t *testing.T) {
	for _, tt := range []struct{ route, want string }{
		{"", "wh_1"},
		{DefaultRoute, "wh_1"},
		{"staging", "staging/wh_1"},
	} {
		d := &Delivery{WebhookID: "wh_1", Route: &Route{Name: tt.route}}
		if got := d.DedupKey(); got != tt.want {
			t.Errorf("route %q: DedupKey = %q, want %q", tt.route, got, tt.want)
		}
	}
}
