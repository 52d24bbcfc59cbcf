package config

import (
	"strings"
	"testing"
)

func TestTracingKeys(t *testing.T) {
	base := "[hypervisor]\ninitrd = \"/i\"\n"
	for _, tc := range []struct {
		name, text, wantErr string
	}{
		{"off", "", ""},
		{"endpoint", "[runtime]\notlp_endpoint = \"http://127.0.0.1:4318\"\n", ""},
		{"endpoint and agent", "[runtime]\notlp_endpoint = \"https://collector:4318/v1/traces\"\n[agent]\nenable_tracing = true\n", ""},
		{"grpc scheme", "[runtime]\notlp_endpoint = \"grpc://127.0.0.1:4317\"\n", "runtime.otlp_endpoint"},
		{"no host", "[runtime]\notlp_endpoint = \"http://\"\n", "runtime.otlp_endpoint"},
		{"credentials", "[runtime]\notlp_endpoint = \"http://u:p@h:4318\"\n", "runtime.otlp_endpoint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(base+tc.text), "test.toml")
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Parse: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Parse: error %v, want one naming %s", err, tc.wantErr)
			}
		})
	}
}
