package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"renkei/internal/dicomtest"
	"renkei/sqlstore/pgtest"
)

// startDemoNode runs `renkei serve --demo` on db until the test ends and returns its base URL and the demo accounts
// (login → password, TOTP key).
func startDemoNode(t *testing.T, args ...string) (string, map[string][2]string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	var stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, append([]string{"serve", "--http", "127.0.0.1:0", "--dimse", "off", "--log-level", "warn"}, args...), pw, &stderr)
		pw.Close()
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("serve exited %d: %s", code, stderr.String())
			}
		case <-time.After(30 * time.Second):
			t.Error("serve did not stop")
		}
	})
	br := bufio.NewReader(pr)
	accounts := map[string][2]string{}
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("no start-up line (%v): %s", err, stderr.String())
		}
		if f := strings.Split(strings.TrimSpace(l), "\t"); len(f) == 3 && strings.HasPrefix(f[0], "demo-") {
			accounts[f[0]] = [2]string{f[1], f[2]}
		}
		if m := regexp.MustCompile(`http://(\S+)/dicomweb`).FindStringSubmatch(l); strings.HasPrefix(l, "renkei is running") && m != nil {
			go io.Copy(io.Discard, br)
			return "http://" + m[1], accounts
		}
	}
}

// liveStream opens GET /api/events on base with c's session and returns the events as "event data" lines.
func liveStream(t *testing.T, base string, c *apiClient) <-chan string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/api/events", nil)
	req.Header.Set("Cookie", "renkei_session="+c.cookie)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/events: %v %v", resp.Status, err)
	}
	got := make(chan string, 100)
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		var event string
		for sc.Scan() {
			if e, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
				event = e
			}
			if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				got <- event + " " + d
			}
		}
	}()
	return got
}

// hear waits for want on the stream, skipping other events.
func hear(t *testing.T, stream <-chan string, want, what string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	var heard []string
	for {
		select {
		case s := <-stream:
			if s == want {
				return
			}
			heard = append(heard, s)
		case <-deadline:
			t.Fatalf("%s: %q not heard on the other node (heard %q)", what, want, heard)
		}
	}
}

// TestClusterLiveEvents runs two `renkei serve --db postgres://…` nodes: the hospital physician's live-update
// stream is open on node B, while on node A a referral moves on and the hospital's CT stores a study; both events
// reach the stream on B (through PostgreSQL LISTEN/NOTIFY), once each.
func TestClusterLiveEvents(t *testing.T) {
	db := pgtest.URL(t)
	data := filepath.Join(t.TempDir(), "data")
	nodeA, accounts := startDemoNode(t, "--data", data, "--db", db, "--demo")
	nodeB, _ := startDemoNode(t, "--data", data, "--db", db)

	// One login (sessions are in the shared index): the stream on B, the actions on A.
	acc := accounts["demo-tanaka@chuo-hospital"]
	tanaka := login(t, nodeA, "demo-tanaka@chuo-hospital", acc[0], acc[1])
	stream := liveStream(t, nodeB, tanaka)

	var board []struct {
		ID     int64  `json:"id"`
		Status string `json:"status"`
	}
	tanaka.getJSON(t, "/api/referrals?direction=in", &board)
	if len(board) == 0 {
		t.Fatal("the demo hospital has no referral waiting")
	}
	if code := tanaka.do(t, "POST", fmt.Sprintf("/api/referrals/%d/receive", board[0].ID), map[string]any{}, nil); code != http.StatusOK {
		t.Fatalf("receive the referral on node A: %d", code)
	}
	hear(t, stream, fmt.Sprintf("referral %d", board[0].ID), "a referral step on node A")

	var out bytes.Buffer
	if code := Main(context.Background(), []string{"admin", "token", "add", "ct-room", "--institution", "chuo-hospital", "--write", "--data", data, "--db", db}, &out, &out); code != 0 {
		t.Fatalf("token add: %s", out.String())
	}
	m := regexp.MustCompile(`(?m)^(rk_\S+)$`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("token add printed no token: %s", out.String())
	}
	study := dicomtest.UID("cluster/study")
	path := filepath.Join(t.TempDir(), "ct.dcm")
	if err := dicomtest.CT(path, dicomtest.CTOptions{StudyInstanceUID: study, SeriesInstanceUID: dicomtest.UID("cluster/series"),
		SOPInstanceUID: dicomtest.UID("cluster/ct"), PatientID: "H0099", Rows: 16, Cols: 16, InstanceNumber: 1}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	w, _ := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/dicom"}})
	w.Write(b)
	mw.Close()
	req, _ := http.NewRequest(http.MethodPost, nodeA+"/dicomweb/studies", &body)
	req.Header.Set("Content-Type", `multipart/related; type="application/dicom"; boundary=`+mw.Boundary())
	req.Header.Set("Authorization", "Bearer "+m[1])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("STOW-RS on node A: %s", resp.Status)
	}
	hear(t, stream, "study "+study, "a study stored on node A")
	select {
	case s := <-stream:
		if s == "study "+study {
			t.Errorf("the study's event was delivered twice")
		}
	case <-time.After(500 * time.Millisecond):
	}
}
