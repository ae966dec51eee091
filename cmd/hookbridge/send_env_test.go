package main

import (
	"testing"
)

// TestSendDefaults: send aims at the address and path serve would listen on,
// and signs with the first of the secrets serve would verify with.
func TestSendDefaults(t *testing.T) {
	for _, tt := range []struct {
		env  map[string]string
		want string
	}{
		{nil, "http://127.0.0.1:8080/webhooks/openai"},
		{map[string]string{"HOOKBRIDGE_LISTEN_ADDR": "0.0.0.0:9000", "HOOKBRIDGE_PATH": "/hooks"}, "http://127.0.0.1:9000/hooks"},
		{map[string]string{"HOOKBRIDGE_LISTEN_ADDR": "[::]:9000"}, "http://127.0.0.1:9000/webhooks/openai"},
		{map[string]string{"HOOKBRIDGE_LISTEN_ADDR": "10.0.0.7:8081"}, "http://10.0.0.7:8081/webhooks/openai"},
	} {
		e, err := parseEnv[sendEnv](tt.env)
		if err != nil {
			t.Fatal(err)
		}
		if got := localURL(e.ListenAddr, e.Path); got != tt.want {
			t.Errorf("%v: default URL %q, want %q", tt.env, got, tt.want)
		}
	}

	file := writeFile(t, testSecret1+"\n")
	for _, tt := range []struct {
		name string
		env  map[string]string
		dev  *devState
		want string
	}{
		{"the variable first", map[string]string{"HOOKBRIDGE_SECRETS": testSecret0 + "," + testSecret1}, nil, testSecret0},
		{"OpenAI's variable", map[string]string{"OPENAI_WEBHOOK_SECRET": testSecret1}, nil, testSecret1},
		{"a blank variable is unset", map[string]string{"HOOKBRIDGE_SECRETS": " ", "OPENAI_WEBHOOK_SECRET": testSecret1}, nil, testSecret1},
		{"the file", map[string]string{"HOOKBRIDGE_SECRETS_FILE": file}, nil, testSecret1},
		{"the dev secret last", nil, &devState{SecretFile: file}, testSecret1},
		{"none", nil, nil, ""},
	} {
		e, err := parseEnv[sendEnv](tt.env)
		if err != nil {
			t.Fatal(err)
		}
		if got := e.defaultSecret(tt.env, tt.dev); got != tt.want {
			t.Errorf("%s: secret %q, want %q", tt.name, got, tt.want)
		}
	}
}
