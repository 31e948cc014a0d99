package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestServeHelpExplainsEveryFlag(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Main(context.Background(), []string{"serve", "--help"}, &out, &errb); code != 0 {
		t.Fatalf("serve --help exited %d", code)
	}
	help := errb.String()
	for _, flag := range []string{"-data", "-http", "-cors-origins", "-trash-days", "-issuer", "-fallback-charset", "-demo", "RENKEI_HTTP"} {
		if !strings.Contains(help, flag) {
			t.Errorf("serve --help does not mention %s:\n%s", flag, help)
		}
	}
	if code := Main(context.Background(), []string{"serve", "--no-such-flag"}, &out, &errb); code == 0 {
		t.Error("an unknown flag was accepted")
	}
	if code := Main(context.Background(), []string{"frobnicate"}, &out, &errb); code != 2 {
		t.Errorf("an unknown command exited %d, want 2", code)
	}
}

// TestServeDemo runs `renkei serve --demo` the way the README says, with the address from the environment, and
// searches the demo data by a kanji name.
func TestServeDemo(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("RENKEI_HTTP", "127.0.0.1:0")
	t.Setenv("RENKEI_DATA", filepath.Join(dir, "data"))
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan int)
	go func() {
		done <- Main(ctx, []string{"serve", "--demo", "--dimse", "127.0.0.1:0", "--log-level", "warn"}, pw, io.Discard)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("no start-up line: %v", err)
	}
	go io.Copy(io.Discard, pr)
	m := regexp.MustCompile(`http://(\S+)/dicomweb`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("start-up line does not give the address: %q", line)
	}
	if !strings.Contains(line, filepath.Join(dir, "data")) {
		t.Errorf("RENKEI_DATA was not used: %q", line)
	}
	resp, err := http.Get("http://" + m[1] + "/dicomweb/studies?PatientName=" + "山田*")
	if err != nil {
		t.Fatal(err)
	}
	var studies []map[string]any
	json.NewDecoder(resp.Body).Decode(&studies)
	resp.Body.Close()
	if len(studies) != 1 {
		t.Errorf("demo data: %d studies for 山田*, want 1", len(studies))
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("serve exited %d after shutdown", code)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop")
	}
}

func TestAdminAE(t *testing.T) {
	data := t.TempDir()
	run := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := Main(context.Background(), append(args, "--data", data), &out, &errb)
		return code, out.String() + errb.String()
	}
	if code, out := run("admin", "ae", "add", "CT1", "--host", "127.0.0.1", "--port", "11113", "--issuer", "HOSP_A", "--charset", "CP932"); code != 0 {
		t.Fatalf("add: %d %s", code, out)
	}
	code, out := run("admin", "ae", "list")
	if code != 0 || !strings.Contains(out, "CT1") || !strings.Contains(out, "11113") || !strings.Contains(out, "CP932") {
		t.Errorf("list: %d %s", code, out)
	}
	if code, out := run("admin", "ae", "add", "WAY_TOO_LONG_AE_TITLE"); code == 0 || !strings.Contains(out, "16 characters") {
		t.Errorf("a 21-character AE title was accepted: %d %s", code, out)
	}
	if code, out := run("admin", "ae", "remove", "CT1"); code != 0 {
		t.Errorf("remove: %d %s", code, out)
	}
	if code, out := run("admin", "ae", "remove", "CT1"); code == 0 || !strings.Contains(out, "not registered") {
		t.Errorf("removing an unknown AE: %d %s", code, out)
	}
}
