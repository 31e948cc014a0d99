// Package notify sends the e-mails that tell an institution's 地域連携室 that something waits for it in renkei. An
// e-mail carries a link to log in and nothing else: never a patient's name, ID or clinical data, because e-mail
// leaves the region's control.
package notify

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"log/slog"
	"mime"
	"net"
	"net/mail"
	"net/smtp"
	"strings"
	"sync"
	"time"
)

// Mailer sends through one SMTP server (STARTTLS when it offers it; PLAIN authentication when a user is set, which
// net/smtp allows only over TLS or to localhost).
type Mailer struct {
	Addr     string // host:port
	From     string // e.g. "renkei <renkei@region.example.jp>"
	User     string
	Password string
	Logger   *slog.Logger
	// Retries is how many times a failed send is tried again, with growing pauses (1 s, 2 s, 4 s, …).
	Retries int

	wg sync.WaitGroup
}

// Message is one e-mail.
type Message struct {
	To      []string
	Subject string
	Body    string
}

// Check reports a configuration that cannot work, so that `renkei serve` refuses it at start.
func (m *Mailer) Check() error {
	if _, _, err := net.SplitHostPort(m.Addr); err != nil {
		return fmt.Errorf("the SMTP server must be host:port: %w", err)
	}
	if _, err := mail.ParseAddress(m.From); err != nil {
		return fmt.Errorf("the sender address %q: %w", m.From, err)
	}
	return nil
}

// Send queues msg and returns at once: a slow or failing mail server never holds up the step that caused it. A send
// that still fails after the retries is logged.
func (m *Mailer) Send(msg Message) {
	var to []string
	for _, a := range msg.To {
		if p, err := mail.ParseAddress(a); err == nil {
			to = append(to, p.Address)
		}
	}
	if len(to) == 0 {
		return
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		pause := time.Second
		for try := 0; ; try++ {
			err := m.send(to, msg)
			if err == nil {
				return
			}
			if try >= m.Retries {
				if m.Logger != nil {
					m.Logger.Error("an e-mail could not be sent", "to", strings.Join(to, ","), "subject", msg.Subject, "err", err)
				}
				return
			}
			time.Sleep(pause)
			pause *= 2
		}
	}()
}

// Wait returns when every queued e-mail was sent or given up (shutdown, tests), or ctx ends.
func (m *Mailer) Wait(ctx context.Context) {
	done := make(chan struct{})
	go func() { m.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

func (m *Mailer) send(to []string, msg Message) error {
	from, err := mail.ParseAddress(m.From)
	if err != nil {
		return err
	}
	var auth smtp.Auth
	if m.User != "" {
		host, _, _ := net.SplitHostPort(m.Addr)
		auth = smtp.PlainAuth("", m.User, m.Password, host)
	}
	return smtp.SendMail(m.Addr, auth, from.Address, to, compose(m.From, to, msg))
}

// compose writes an RFC 5322 message: UTF-8 headers in encoded words, a base64 UTF-8 text body.
func compose(from string, to []string, msg Message) []byte {
	var b bytes.Buffer
	id := make([]byte, 12)
	rand.Read(id)
	domain := "renkei.invalid"
	if a, err := mail.ParseAddress(from); err == nil {
		if i := strings.LastIndex(a.Address, "@"); i >= 0 {
			domain = a.Address[i+1:]
		}
	}
	header := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	if a, err := mail.ParseAddress(from); err == nil {
		header("From", (&mail.Address{Name: a.Name, Address: a.Address}).String())
	}
	header("To", strings.Join(to, ", "))
	header("Subject", mime.BEncoding.Encode("UTF-8", msg.Subject))
	header("Date", time.Now().Format(time.RFC1123Z))
	header("Message-ID", "<"+hex.EncodeToString(id)+"@"+domain+">")
	header("MIME-Version", "1.0")
	header("Content-Type", `text/plain; charset="UTF-8"`)
	header("Content-Transfer-Encoding", "base64")
	header("Auto-Submitted", "auto-generated")
	b.WriteString("\r\n")
	enc := base64.StdEncoding.EncodeToString([]byte(strings.ReplaceAll(msg.Body, "\n", "\r\n")))
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n")
	return b.Bytes()
}
