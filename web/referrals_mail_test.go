package web_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"net"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"renkei/notify"
)

// smtpServer starts a real SMTP server (Debian's python3-aiosmtpd, installed by scripts/setup) that files what it
// receives in a Maildir, and returns its address and the folder of received messages.
func smtpServer(t *testing.T) (string, string) {
	t.Helper()
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import aiosmtpd").Run(); err != nil {
		t.Fatalf("aiosmtpd is missing: scripts/setup installs python3-aiosmtpd (%v)", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dir := filepath.Join(t.TempDir(), "maildir")
	cmd := exec.Command(py, "-m", "aiosmtpd", "-n", "-l", addr, "-c", "aiosmtpd.handlers.Mailbox", dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for i := 0; ; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if i > 100 {
			t.Fatal("the SMTP server did not start")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return addr, filepath.Join(dir, "new")
}

type received struct {
	to, subject, body string
}

// mailbox reads the messages in a Maildir's new/ folder, decoded.
func mailbox(t *testing.T, dir string) []received {
	t.Helper()
	files, _ := os.ReadDir(dir)
	var out []received
	dec := new(mime.WordDecoder)
	for _, f := range files {
		raw, err := os.Open(filepath.Join(dir, f.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m, err := mail.ReadMessage(raw)
		if err != nil {
			t.Fatal(err)
		}
		subject, _ := dec.DecodeHeader(m.Header.Get("Subject"))
		var body []byte
		if m.Header.Get("Content-Transfer-Encoding") == "base64" {
			b, _ := io.ReadAll(m.Body)
			body, _ = base64.StdEncoding.DecodeString(strings.NewReplacer("\r", "", "\n", "").Replace(string(b)))
		}
		raw.Close()
		out = append(out, received{m.Header.Get("To"), subject, string(body)})
	}
	return out
}

// TestReferralMail: with a mail server configured, each step tells the other side's 地域連携室 by e-mail, with a
// link to the referral and nothing about the patient.
func TestReferralMail(t *testing.T) {
	r := newRegion(t)
	ctx := context.Background()
	addr, inbox := smtpServer(t)
	r.hospital.Email = "renkei@chuo-hospital.example.jp"
	r.clinic.Email = "chiiki@kita-clinic.example.jp"
	if err := r.db.PutInstitution(ctx, &r.hospital, nil); err != nil {
		t.Fatal(err)
	}
	if err := r.db.PutInstitution(ctx, &r.clinic, nil); err != nil {
		t.Fatal(err)
	}
	r.front.Mailer = &notify.Mailer{Addr: addr, From: "renkei <renkei@region.example.jp>", Retries: 2}
	r.front.PublicURL = "https://renkei.example.jp"
	clinic, hospital := r.as("kato@kita-clinic"), r.as("tanaka@chuo-hospital")
	if st := clinic.post("/api/referrals", map[string]any{"issuer": "KITA", "patientId": "P1", "toInstitution": "chuo-hospital",
		"studies": []string{r.p1a.studyUID}, "letter": map[string]string{"purpose": "精査加療のお願い", "diagnosis": "右肺結節"}}); st != 201 {
		t.Fatalf("create: %d %s", st, clinic.body)
	}
	ref := decodeReferral(t, clinic)
	path := fmt.Sprintf("/api/referrals/%d", ref.ID)
	for _, step := range []struct {
		c      *client
		action string
		body   any
	}{{clinic, "send", nil}, {hospital, "receive", nil}, {hospital, "accept", map[string]string{"appointment": "2026-12-03"}}} {
		if st := step.c.post(path+"/"+step.action, step.body); st != 200 {
			t.Fatalf("%s: %d %s", step.action, st, step.c.body)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	r.front.Mailer.Wait(wctx)
	msgs := mailbox(t, inbox)
	if len(msgs) != 3 {
		t.Fatalf("%d e-mails, want 3 (sent → hospital, received and accepted → clinic): %+v", len(msgs), msgs)
	}
	want := map[string]int{"renkei@chuo-hospital.example.jp": 1, "chiiki@kita-clinic.example.jp": 2}
	for _, m := range msgs {
		want[m.to]--
		link := fmt.Sprintf("https://renkei.example.jp/#/referral/%d", ref.ID)
		if !strings.Contains(m.body, link) || !strings.Contains(m.subject, fmt.Sprintf("No. %d", ref.ID)) {
			t.Errorf("an e-mail without its link or number: %q\n%s", m.subject, m.body)
		}
		for _, secret := range []string{"山田", "Yamada", "P1", "右肺結節", "精査", r.p1a.studyUID} {
			if strings.Contains(m.body, secret) || strings.Contains(m.subject, secret) {
				t.Errorf("an e-mail carries patient data %q:\n%s\n%s", secret, m.subject, m.body)
			}
		}
	}
	for to, n := range want {
		if n != 0 {
			t.Errorf("%s got the wrong number of e-mails (%d off)", to, n)
		}
	}
}
