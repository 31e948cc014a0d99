package atna

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"renkei"
)

// Store is what the exporter reads: the chain in order, its own cursor, and the institutions events name by key.
type Store interface {
	AuditEventsAfter(ctx context.Context, seq int64, limit int) ([]renkei.AuditEvent, error)
	ExportCursor(ctx context.Context, name string) (int64, error)
	SetExportCursor(ctx context.Context, name string, seq int64) error
	Institutions(ctx context.Context) ([]renkei.Institution, error)
}

// Exporter sends the audit chain to a syslog collector over TLS (RFC 5425), in order, from a cursor kept in the
// Store: after a restart it resumes after the last event it knows was delivered.
//
// Syslog over TCP has no acknowledgement, so "delivered" is inferred. A message counts as delivered once the
// connection it was written to has stayed open for Settle after it (a collector that stops or crashes closes or
// resets the connection, which the exporter notices within a round trip); when the connection breaks, every
// message not yet counted is sent again on the next one. On a clean shutdown the exporter closes its side and
// waits for the collector to close the other: the collector has then read everything, and the cursor moves to the
// end. So a clean restart of renkei sends nothing twice, and a collector that goes away loses nothing; a message may
// be sent twice when the connection breaks just after the collector read it, or when renkei itself crashes
// (at-least-once). The [meta sequenceId] of each message tells a collector which ones it already has.
type Exporter struct {
	Store  Store
	Addr   string      // the collector, host:port
	TLS    *tls.Config // ServerName defaults to Addr's host
	Name   string      // the cursor's name in the Store, default "syslog"
	Header Header
	Source Source
	Logger *slog.Logger

	Poll   time.Duration // how often to look for new events when idle, default 1 s
	Settle time.Duration // how long a connection must stay open after a message before it counts as delivered, default 2 s
	Batch  int           // events read and written at once, default 500
	// MaxBackoff bounds the wait between attempts to reach a collector that is down, default 30 s.
	MaxBackoff time.Duration

	mu     sync.Mutex
	status Status
}

// Status is what the exporter last did, for the security page.
type Status struct {
	Addr        string
	Connected   bool
	Delivered   int64 // every event up to this Seq has been delivered
	LastSent    time.Time
	LastError   string
	LastErrorAt time.Time
}

// Status returns the exporter's current state.
func (x *Exporter) Status() Status {
	x.mu.Lock()
	defer x.mu.Unlock()
	s := x.status
	s.Addr = x.Addr
	return s
}

func (x *Exporter) logger() *slog.Logger {
	if x.Logger == nil {
		return slog.Default()
	}
	return x.Logger
}

func dur(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// conn is one TLS connection to the collector. A reader goroutine drains what the collector sends (nothing, in
// syslog, but TLS session tickets and alerts) and closes closed when the collector closes or resets the connection.
type conn struct {
	tc     *tls.Conn
	w      *bufio.Writer
	closed chan struct{}
	err    error // why it closed; set before closed is closed
}

func (c *conn) broken() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

type mark struct {
	seq int64
	at  time.Time
}

// Run exports until ctx ends, then closes cleanly (see Exporter). It returns an error only if the cursor cannot be
// read at start; later failures (collector down, index busy) are logged, kept in Status, and retried.
func (x *Exporter) Run(ctx context.Context) error {
	name := or(x.Name, "syslog")
	delivered, err := x.Store.ExportCursor(ctx, name)
	if err != nil {
		return fmt.Errorf("audit export cursor: %w", err)
	}
	x.mu.Lock()
	x.status.Delivered = delivered
	x.mu.Unlock()
	poll, settle, maxBackoff := dur(x.Poll, time.Second), dur(x.Settle, 2*time.Second), dur(x.MaxBackoff, 30*time.Second)
	batch := x.Batch
	if batch <= 0 {
		batch = 500
	}
	sent := delivered
	var pending []mark
	var c *conn
	backoff := poll
	saved := delivered
	save := func(sctx context.Context) {
		if delivered == saved {
			return
		}
		if err := x.Store.SetExportCursor(sctx, name, delivered); err != nil {
			x.logger().Warn("audit export: the cursor could not be saved (events may be sent again after a restart)", "err", err)
			return
		}
		saved = delivered
		x.mu.Lock()
		x.status.Delivered = delivered
		x.mu.Unlock()
	}
	drop := func(err error) {
		if c != nil {
			c.tc.Close()
			<-c.closed
			c = nil
		}
		sent, pending = delivered, nil // resend everything not known to be delivered
		x.failed(err)
	}
	wait := func(d time.Duration) bool {
		var closed chan struct{}
		if c != nil {
			closed = c.closed
		}
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		case <-closed:
		}
		return true
	}
	for ctx.Err() == nil {
		if c == nil {
			c, err = x.dial(ctx)
			if err != nil {
				x.failed(err)
				if !wait(backoff) {
					break
				}
				backoff = min(backoff*2, maxBackoff)
				continue
			}
			backoff = poll
			x.mu.Lock()
			x.status.Connected = true
			x.mu.Unlock()
		}
		if c.broken() {
			drop(fmt.Errorf("the collector closed the connection: %w", c.err))
			continue
		}
		events, err := x.Store.AuditEventsAfter(ctx, sent, batch)
		if err != nil {
			if ctx.Err() == nil {
				x.logger().Warn("audit export: the audit trail could not be read", "err", err)
			}
			wait(poll)
			continue
		}
		if len(events) > 0 {
			if err := x.write(ctx, c, events); err != nil {
				drop(err)
				continue
			}
			sent = events[len(events)-1].Seq
			now := time.Now()
			pending = append(pending, mark{sent, now})
			x.mu.Lock()
			x.status.LastSent = now
			x.mu.Unlock()
		}
		// What has been written long enough ago on a connection that is still open has arrived.
		if !c.broken() {
			cut := time.Now().Add(-settle)
			i := 0
			for i < len(pending) && !pending[i].at.After(cut) {
				delivered = pending[i].seq
				i++
			}
			pending = pending[i:]
			save(ctx)
		}
		if len(events) == batch {
			continue
		}
		next := poll
		if len(pending) > 0 {
			next = min(poll, time.Until(pending[0].at.Add(settle))+time.Millisecond)
		}
		if !wait(max(next, time.Millisecond)) {
			break
		}
	}
	// Clean shutdown: close our side; when the collector closes its side it has read all we wrote.
	if c != nil {
		if sent > delivered {
			c.tc.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if err := c.tc.CloseWrite(); err == nil {
				t := time.NewTimer(5 * time.Second)
				select {
				case <-c.closed:
					if errors.Is(c.err, io.EOF) {
						delivered = sent
					}
				case <-t.C:
				}
				t.Stop()
			}
		}
		c.tc.Close()
		<-c.closed
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	save(sctx)
	x.mu.Lock()
	x.status.Connected = false
	x.mu.Unlock()
	return nil
}

func (x *Exporter) failed(err error) {
	x.mu.Lock()
	first := x.status.LastError == "" || x.status.Connected
	x.status.Connected, x.status.LastError, x.status.LastErrorAt = false, err.Error(), time.Now()
	x.mu.Unlock()
	if first {
		x.logger().Warn("audit export: the syslog collector cannot be reached; events wait and are sent when it is back", "addr", x.Addr, "err", err)
	}
}

func (x *Exporter) dial(ctx context.Context) (*conn, error) {
	conf := x.TLS
	if conf == nil {
		conf = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	conf = conf.Clone()
	if conf.ServerName == "" {
		host, _, err := net.SplitHostPort(x.Addr)
		if err != nil {
			return nil, fmt.Errorf("syslog address %q: %w", x.Addr, err)
		}
		conf.ServerName = host
	}
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}, Config: conf}
	dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	nc, err := d.DialContext(dctx, "tcp", x.Addr)
	if err != nil {
		return nil, err
	}
	tc := nc.(*tls.Conn)
	c := &conn{tc: tc, w: bufio.NewWriterSize(tc, 64<<10), closed: make(chan struct{})}
	go func() {
		_, err := io.Copy(io.Discard, tc)
		if err == nil {
			err = io.EOF
		}
		c.err = err
		close(c.closed)
	}()
	x.logger().Info("audit export: connected to the syslog collector", "addr", x.Addr)
	return c, nil
}

// write sends events as framed syslog messages and flushes them.
func (x *Exporter) write(ctx context.Context, c *conn, events []renkei.AuditEvent) error {
	for i := range events {
		if !x.knows(events[i].Institution) || !x.knows(events[i].DataInstitution) {
			x.refreshInstitutions(ctx) // once a batch: an institution added since the last load
			break
		}
	}
	for i := range events {
		e := &events[i]
		body, err := Message(e, x.Source)
		if err != nil {
			return err
		}
		c.tc.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.w.Write(Frame(SyslogMessage(x.Header, e, body))); err != nil {
			return fmt.Errorf("send to the syslog collector: %w", err)
		}
	}
	if err := c.w.Flush(); err != nil {
		return fmt.Errorf("send to the syslog collector: %w", err)
	}
	return nil
}

// knows reports whether the institution with key pk has a name to write (only Run's goroutine touches Source).
func (x *Exporter) knows(pk int64) bool {
	_, ok := x.Source.Institutions[pk]
	return ok || pk == 0
}

// refreshInstitutions reloads the institutions (an event names one added since the last load). A failure leaves
// the names out of the messages rather than holding the export up.
func (x *Exporter) refreshInstitutions(ctx context.Context) {
	list, err := x.Store.Institutions(ctx)
	if err != nil {
		return
	}
	m := make(map[int64]renkei.Institution, len(list))
	for _, in := range list {
		m[in.PK] = in
	}
	x.Source.Institutions = m
}
