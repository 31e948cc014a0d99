package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// fromAddr is an HTTP client whose connections come from a given loopback address (127.0.0.2, …): a second machine,
// as far as renkei can tell.
func fromAddr(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}, Timeout: 30 * time.Second}
}

type alertSeen struct {
	ID       int64  `json:"id"`
	Rule     string `json:"rule"`
	Severity string `json:"severity"`
	Actor    string `json:"actor"`
	Source   string `json:"source"`
	Events   []int64
	Patient  *struct{ ID string } `json:"patient"`
}

// TestAttackSuite runs scripted attacks against a running `renkei serve --demo` (with the region's rules file) and
// checks that each raises exactly the alert it should, within 10 seconds: bulk reading by a clinic doctor, password
// spraying from another machine, an API token used from two machines, UID guessing, a break-glass access left
// unreviewed, and an unregistered DICOM device probing with echoscu.
func TestAttackSuite(t *testing.T) {
	if _, err := exec.LookPath("echoscu"); err != nil {
		t.Skip("echoscu is missing: install Debian's dcmtk (scripts/setup does)")
	}
	if c, err := fromAddr("127.0.0.2").Get("http://127.0.0.1:1/"); err == nil {
		c.Body.Close()
	} else if strings.Contains(err.Error(), "assign requested address") {
		t.Skip("this machine cannot use 127.0.0.2 as a source address")
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	rules := filepath.Join(dir, "rules.json")
	// The region's thresholds: the demo clinic has three patients, and its reviews are due within seconds, not a day.
	if err := os.WriteFile(rules, []byte(`{"bulkAccess": {"patients": 3}, "breakGlass": {"review": "3s"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"serve", "--demo", "--data", data, "--http", "127.0.0.1:0", "--dimse", "127.0.0.1:0", "--log-level", "error",
			"--monitor-rules", rules, "--monitor-poll", "200ms"}, pw, io.Discard)
		pw.Close()
	}()
	defer func() { cancel(); <-done }()
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
	m := regexp.MustCompile(`http://(\S+)/dicomweb, dicom RENKEI@127\.0\.0\.1:(\d+)`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("start-up line: %q", line)
	}
	base, dimsePort := "http://"+m[1], m[2]
	as := func(user string) *apiClient {
		acc := accounts[user]
		return login(t, base, user, acc[0], acc[1])
	}
	region := as("demo-admin@region")
	seen := map[int64]bool{}
	// expect waits (at most 10 s) for exactly one new alert, of rule, and returns it; any other new alert fails.
	expect := func(what, rule string) alertSeen {
		t.Helper()
		start := time.Now()
		for {
			var list []alertSeen
			region.getJSON(t, "/api/alerts?status=all", &list)
			var fresh []alertSeen
			for _, a := range list {
				if !seen[a.ID] {
					fresh = append(fresh, a)
				}
			}
			if slices.ContainsFunc(fresh, func(a alertSeen) bool { return a.Rule == rule }) {
				// Let the monitor finish the batch that raised it, then take stock.
				time.Sleep(500 * time.Millisecond)
				region.getJSON(t, "/api/alerts?status=all", &list)
				fresh = fresh[:0]
				for _, a := range list {
					if !seen[a.ID] {
						fresh = append(fresh, a)
						seen[a.ID] = true
					}
				}
				if len(fresh) != 1 {
					t.Errorf("%s raised %d alerts, want one %s: %+v", what, len(fresh), rule, fresh)
				}
				t.Logf("%s: %s alert after %v", what, rule, time.Since(start).Round(10*time.Millisecond))
				return fresh[0]
			}
			if time.Since(start) > 10*time.Second {
				t.Fatalf("%s raised no %s alert within 10 s; new alerts: %+v", what, rule, fresh)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// 1. A clinic doctor opens every patient of the clinic, one after the other.
	kato := as("demo-kato@kita-clinic")
	var studies []map[string]struct{ Value []any }
	kato.getJSON(t, "/dicomweb/studies", &studies)
	for _, st := range studies {
		uid := fmt.Sprint(st["0020000D"].Value[0])
		if code := kato.do(t, "GET", "/dicomweb/studies/"+uid+"/metadata", nil, nil); code != 200 {
			t.Fatalf("read %s: %d", uid, code)
		}
	}
	if a := expect("bulk reading", "bulk-access"); a.Actor != "demo-kato@kita-clinic" || a.Severity != "high" {
		t.Errorf("bulk reading: %+v", a)
	}

	// 2. Password spraying: one wrong password tried on six accounts, from another machine.
	other := fromAddr("127.0.0.2")
	for _, login := range []string{"demo-tanaka@chuo-hospital", "demo-suzuki@chuo-hospital", "demo-sato@chuo-hospital", "demo-ito@chuo-hospital",
		"demo-admin@chuo-hospital", "demo-nakamura@sakura-care"} {
		resp, err := other.Post(base+"/api/login", "application/json", strings.NewReader(`{"login":"`+login+`","password":"Password2026!"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Fatalf("a sprayed login: %d", resp.StatusCode)
		}
	}
	if a := expect("password spraying", "password-spraying"); a.Source != "127.0.0.2" {
		t.Errorf("password spraying: %+v", a)
	}

	// 3. The clinic's API token, used by its gateway (127.0.0.1) and by someone else (127.0.0.3) at once.
	var out bytes.Buffer
	if code := Main(context.Background(), []string{"admin", "token", "add", "ct-gateway", "--institution", "kita-clinic", "--data", data}, &out, &out); code != 0 {
		t.Fatalf("token add: %s", out.String())
	}
	token := regexp.MustCompile(`rk_\S+`).FindString(out.String())
	for _, c := range []*http.Client{http.DefaultClient, fromAddr("127.0.0.3")} {
		req, _ := http.NewRequest("GET", base+"/dicomweb/studies", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("token search: %d", resp.StatusCode)
		}
	}
	if a := expect("a token from two machines", "token-two-addresses"); a.Actor != "ct-gateway" {
		t.Errorf("token: %+v", a)
	}

	// 4. A hospital doctor guesses study UIDs.
	tanaka := as("demo-tanaka@chuo-hospital")
	for i := range 20 {
		if code := tanaka.do(t, "GET", fmt.Sprintf("/dicomweb/studies/1.2.392.200036.9116.2.6.1.%d/metadata", 1000+i), nil, nil); code != 404 {
			t.Fatalf("a guessed UID: %d", code)
		}
	}
	if a := expect("UID enumeration", "uid-enumeration"); a.Actor != "demo-tanaka@chuo-hospital" || len(a.Events) != 20 {
		t.Errorf("enumeration: %+v", a)
	}

	// 5. Break-glass to a clinic patient, and nobody at the clinic reviews it.
	if code := tanaka.do(t, "POST", "/api/break-glass", map[string]string{"birthDate": "19600415", "name": "鈴木一郎", "reason": "救急搬送、意識障害"}, nil); code != 201 {
		t.Fatalf("break-glass: %d", code)
	}
	if a := expect("an unreviewed break-glass", "break-glass-unreviewed"); a.Patient == nil || a.Patient.ID != "D0004" {
		t.Errorf("break-glass: %+v", a)
	}

	// 6. An unregistered DICOM device probes the DIMSE port.
	cmd := exec.Command("echoscu", "-aet", "PROBE", "-aec", "RENKEI", "127.0.0.1", dimsePort)
	cmd.Env = append(os.Environ(), "TCP_NODELAY=1")
	if o, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(o), "Calling AE Title Not Recognized") {
		t.Fatalf("the probe was not rejected: %v\n%s", err, o)
	}
	if a := expect("an unknown AE", "unknown-ae"); a.Actor != "PROBE" || a.Source != "127.0.0.1" {
		t.Errorf("unknown AE: %+v", a)
	}
}
