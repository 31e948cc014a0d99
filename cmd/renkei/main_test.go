package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"
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

// TestServeDemo runs `renkei serve --demo` the way the README says, with the address from the environment, logs in
// as the hospital's physician with a printed demo password and authenticator key, and searches the demo data by a
// kanji name: the hospital sees its own patients and the one the clinic shared, not the clinic's other patient. The
// patient then logs in and sees both institutions' studies and that the hospital looked at them.
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
	br := bufio.NewReader(pr)
	accounts := map[string][2]string{}
	var line string
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("no start-up line: %v", err)
		}
		if f := strings.Split(strings.TrimSpace(l), "\t"); len(f) == 3 && strings.HasPrefix(f[0], "demo-") {
			accounts[f[0]] = [2]string{f[1], f[2]}
		}
		if strings.HasPrefix(l, "renkei is running") {
			line = l
			break
		}
	}
	go io.Copy(io.Discard, pr)
	m := regexp.MustCompile(`http://(\S+)/dicomweb`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("start-up line does not give the address: %q", line)
	}
	if !strings.Contains(line, filepath.Join(dir, "data")) {
		t.Errorf("RENKEI_DATA was not used: %q", line)
	}
	base := "http://" + m[1]
	if resp, err := http.Get(base + "/dicomweb/studies"); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("DICOMweb without a login: %v %v, want 401", resp.Status, err)
	}
	acc, ok := accounts["demo-tanaka@chuo-hospital"]
	if !ok {
		t.Fatalf("the demo accounts were not printed: %v", accounts)
	}
	c := login(t, base, "demo-tanaka@chuo-hospital", acc[0], acc[1])
	for _, tc := range []struct {
		name string
		want int
	}{{"山田*", 2}, {"髙橋*", 1}, {"鈴木*", 0}, {"Buc*", 1}} {
		var studies []map[string]any
		c.getJSON(t, "/dicomweb/studies?PatientName="+tc.name, &studies)
		if len(studies) != tc.want {
			t.Errorf("the hospital's physician finds %d studies for %s, want %d", len(studies), tc.name, tc.want)
		}
	}
	// The hospital's board holds the clinic's referral and reading request, waiting for it.
	var board []map[string]any
	c.getJSON(t, "/api/referrals?direction=in", &board)
	if len(board) != 2 {
		t.Errorf("the hospital's referrals board lists %d referrals, want 2", len(board))
	}
	// The directory knows where a patient can go on for rehabilitation.
	var rehab []map[string]any
	c.getJSON(t, "/api/directory?beds="+url.QueryEscape("回復期リハビリテーション"), &rehab)
	if len(rehab) != 1 {
		t.Errorf("the directory finds %d institutions with a free rehabilitation bed, want 1", len(rehab))
	}
	acc = accounts["demo-yamada"]
	patient := login(t, base, "demo-yamada", acc[0], acc[1])
	var mine []map[string]any
	patient.getJSON(t, "/api/my/studies", &mine)
	if len(mine) != 2 {
		t.Errorf("the patient sees %d studies of their own, want 2 (clinic and hospital): %v", len(mine), mine)
	}
	var log []map[string]any
	patient.getJSON(t, "/api/my/access-log", &log)
	sawHospital := false
	for _, e := range log {
		if e["institution"] == "みなと中央病院" && e["role"] == "physician" && e["action"] == "query" {
			sawHospital = true
		}
	}
	if !sawHospital {
		t.Errorf("the patient's access log does not show the hospital physician's search: %v", log)
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

	// The same data folder served without --demo: the printed demo passwords open nothing.
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	pr, pw = io.Pipe()
	go func() {
		done <- Main(ctx, []string{"serve", "--dimse", "off", "--log-level", "warn"}, pw, io.Discard)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, pr)
	base = "http://" + regexp.MustCompile(`http://(\S+)/dicomweb`).FindStringSubmatch(line)[1]
	c = &apiClient{base: base}
	if code := c.do(t, "POST", "/api/login", map[string]string{"login": "demo-tanaka@chuo-hospital", "password": accounts["demo-tanaka@chuo-hospital"][0]}, nil); code != http.StatusForbidden {
		t.Errorf("a demo login on a server without --demo: %d, want 403", code)
	}
	cancel()
	<-done
}

func TestAdminAE(t *testing.T) {
	data := t.TempDir()
	run := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := Main(context.Background(), append(args, "--data", data), &out, &errb)
		return code, out.String() + errb.String()
	}
	if code, out := run("admin", "ae", "add", "CT1", "--host", "127.0.0.1", "--port", "11113", "--institution", "nowhere"); code == 0 || !strings.Contains(out, "no institution") {
		t.Errorf("an AE of an unknown institution: %d %s", code, out)
	}
	if code, out := run("admin", "institution", "add", "chuo-hospital", "--name", "中央病院", "--kind", "hospital", "--code", "1311234567"); code != 0 {
		t.Fatalf("institution add: %d %s", code, out)
	}
	if code, out := run("admin", "ae", "add", "CT1", "--host", "127.0.0.1", "--port", "11113", "--issuer", "HOSP_A", "--charset", "CP932", "--institution", "chuo-hospital"); code != 0 {
		t.Fatalf("add: %d %s", code, out)
	}
	code, out := run("admin", "ae", "list")
	if code != 0 || !strings.Contains(out, "CT1") || !strings.Contains(out, "11113") || !strings.Contains(out, "CP932") {
		t.Errorf("list: %d %s", code, out)
	}
	if code, out := run("admin", "ae", "add", "WAY_TOO_LONG_AE_TITLE", "--institution", "chuo-hospital"); code == 0 || !strings.Contains(out, "16 characters") {
		t.Errorf("a 21-character AE title was accepted: %d %s", code, out)
	}
	if code, out := run("admin", "ae", "remove", "CT1"); code != 0 {
		t.Errorf("remove: %d %s", code, out)
	}
	if code, out := run("admin", "ae", "remove", "CT1"); code == 0 || !strings.Contains(out, "not registered") {
		t.Errorf("removing an unknown AE: %d %s", code, out)
	}
}

// TestAdminRegion provisions a region from a shell script's point of view (renkei admin only, no prompts) and checks
// what a region's IT staff would: one-time passwords printed, tokens shown once and revocable, and that editing the
// audit trail by hand is caught by audit verify, which names the event and exits non-zero.
func TestAdminRegion(t *testing.T) {
	data := t.TempDir()
	run := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := Main(context.Background(), append(args, "--data", data), &out, &errb)
		return code, out.String() + errb.String()
	}
	must := func(args ...string) string {
		t.Helper()
		code, out := run(args...)
		if code != 0 {
			t.Fatalf("%v: %d %s", args, code, out)
		}
		return out
	}
	if code, out := run("admin", "institution", "add", "chuo", "--name", "中央病院", "--kind", "hospital", "--code", "9912345678"); code == 0 || !strings.Contains(out, "医療機関コード") {
		t.Errorf("an impossible 医療機関コード: %d %s", code, out)
	}
	if code, out := run("admin", "institution", "add", "Chuo Hospital", "--name", "中央病院", "--kind", "hospital"); code == 0 {
		t.Errorf("an ID with spaces and capitals: %d %s", code, out)
	}
	must("admin", "institution", "add", "chuo", "--name", "中央病院", "--kind", "hospital", "--code", "1311234567", "--functions", "高度急性期,急性期")
	if code, out := run("admin", "user", "add", "dr@chuo", "--institution", "chuo", "--role", "surgeon"); code == 0 || !strings.Contains(out, "role") {
		t.Errorf("an unknown role: %d %s", code, out)
	}
	out := must("admin", "user", "add", "dr@chuo", "--institution", "chuo", "--role", "physician", "--name", "田中 一郎")
	if !regexp.MustCompile(`one-time password: [a-z2-9]{4}(-[a-z2-9]{4}){3}`).MatchString(out) {
		t.Errorf("user add printed no one-time password: %s", out)
	}
	if code, out := run("admin", "user", "add", "dr@chuo", "--institution", "chuo", "--role", "nurse"); code == 0 || !strings.Contains(out, "taken") {
		t.Errorf("a login taken twice: %d %s", code, out)
	}
	if out := must("admin", "user", "list", "--institution", "chuo"); !strings.Contains(out, "dr@chuo") || !strings.Contains(out, "one-time password") {
		t.Errorf("user list: %s", out)
	}
	if out := must("admin", "user", "reset", "dr@chuo"); !strings.Contains(out, "one-time password:") {
		t.Errorf("user reset: %s", out)
	}
	must("admin", "user", "disable", "dr@chuo")
	if out := must("admin", "user", "list", "--institution", "chuo"); !strings.Contains(out, "disabled") {
		t.Errorf("user list after disable: %s", out)
	}
	must("admin", "user", "enable", "dr@chuo") // e.g. after an alert locked them and the admin found it was them
	if out := must("admin", "user", "list", "--institution", "chuo"); strings.Contains(out, "disabled") {
		t.Errorf("user list after enable: %s", out)
	}
	out = must("admin", "token", "add", "gateway", "--institution", "chuo", "--write")
	if !regexp.MustCompile(`(?m)^rk_[A-Za-z0-9_-]{43}$`).MatchString(out) {
		t.Errorf("token add: %s", out)
	}
	if out := must("admin", "token", "list"); !strings.Contains(out, "gateway") || !strings.Contains(out, "read-write") || strings.Contains(out, "rk_") {
		t.Errorf("token list (must not show secrets): %s", out)
	}
	must("admin", "token", "revoke", "1")
	if out := must("admin", "token", "list"); !strings.Contains(out, "revoked") {
		t.Errorf("token list after revoke: %s", out)
	}
	if out := must("admin", "audit", "verify"); !strings.Contains(out, "intact") {
		t.Errorf("audit verify: %s", out)
	}
	db, err := sql.Open("sqlite", filepath.Join(data, "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE audit_events SET detail = 'nothing happened' WHERE seq = 3`); err != nil {
		t.Fatal(err)
	}
	code, out := run("admin", "audit", "verify")
	if code == 0 || !strings.Contains(out, "event 3:") {
		t.Errorf("audit verify after editing event 3: %d %s", code, out)
	}
}
