package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestGatewayRefusesPlainHTTP: a gateway sends patients' images out of the hospital; over plain HTTP to another
// machine it refuses to start, and says why.
func TestGatewayRefusesPlainHTTP(t *testing.T) {
	for raw, ok := range map[string]bool{
		"https://renkei.example.jp": true, "https://10.0.0.5:8443/": true, "http://127.0.0.1:8080": true, "http://localhost:8080": true,
		"http://[::1]:8080": true, "http://renkei.example.jp": false, "http://10.0.0.5:8080": false, "ftp://renkei.example.jp": false, "renkei": false,
	} {
		if err := serverURLSafe(raw); (err == nil) != ok {
			t.Errorf("%s: %v, want accepted %v", raw, err, ok)
		}
	}
	var out, errOut bytes.Buffer
	code := Main(context.Background(), []string{"gateway", "--server", "http://renkei.example.jp", "--token-file", "none", "--dimse", "127.0.0.1:0",
		"--ae", "GW", "--spool", t.TempDir()}, &out, &errOut)
	if code == 0 || !strings.Contains(errOut.String(), "unencrypted") {
		t.Errorf("gateway to http://renkei.example.jp: exit %d\n%s%s", code, out.String(), errOut.String())
	}
}
