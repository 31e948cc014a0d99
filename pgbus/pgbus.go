// Package pgbus lets several renkei nodes that share one PostgreSQL behave as one: messages between nodes travel by
// LISTEN/NOTIFY on one channel, and work that must run on one node only holds a lease, a session advisory lock.
// Nothing here knows what the messages mean: web relays live events through it and consult relays room messages.
//
// Delivery is at most once and best effort, as NOTIFY is: a node whose listening connection is down misses what is
// sent meanwhile (it reconnects with backoff, and its users' pages catch up at the next event or when reloaded).
package pgbus

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver

	"renkei"
)

// Channel is the one NOTIFY channel renkei's nodes talk on.
const Channel = "renkei"

// MaxPayload is the largest NOTIFY payload sent: PostgreSQL refuses 8000 bytes or more, and the envelope needs room.
const MaxPayload = 7900

// MaxBody is the largest body Send accepts; a body whose envelope exceeds MaxPayload is sent in parts.
const MaxBody = 4 << 20

// Bus is one node's end of the bus. Open it, Listen to topics, Send, and Close at the end.
type Bus struct {
	// Node names this node in every message, so that it ignores its own.
	Node   string
	Logger *slog.Logger
	// Check is how often a lease's connection is checked, and how long a new holder waits before starting the job,
	// so that the previous holder, which may not yet have noticed that it lost its connection, has stopped (default
	// 1 s).
	Check time.Duration
	// Retry is how often a node that does not hold a lease tries to take it (default 2 s).
	Retry time.Duration

	url   string
	db    *sql.DB // for sending
	out   chan string
	mu    sync.Mutex
	topic map[string][]func(body []byte)
	parts map[string]*partial

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type partial struct {
	n, got int
	parts  [][]byte
	at     time.Time
}

// envelope is a NOTIFY payload: who sent it, on which topic, and the body (JSON), or one part of a large body
// (base64, ID names the whole, I counts from 0 to N-1).
type envelope struct {
	Node  string          `json:"n"`
	Topic string          `json:"t"`
	Body  json.RawMessage `json:"b,omitempty"`
	ID    string          `json:"id,omitempty"`
	I     int             `json:"i,omitempty"`
	N     int             `json:"k,omitempty"`
	Part  string          `json:"p,omitempty"`
}

// Open connects to the PostgreSQL at url, starts listening, and returns when the first LISTEN succeeded (error
// Unavailable if it could not within ctx). Messages are delivered to the handlers registered with Listen.
func Open(ctx context.Context, url string, logger *slog.Logger) (*Bus, error) {
	if logger == nil {
		logger = slog.Default()
	}
	db, err := sql.Open("pgx", url)
	if err != nil {
		return nil, fmt.Errorf("pgbus: %w", err)
	}
	db.SetMaxOpenConns(2)
	id := make([]byte, 6)
	rand.Read(id)
	b := &Bus{Node: hex.EncodeToString(id), Logger: logger, url: url, db: db, out: make(chan string, 4096),
		topic: map[string][]func([]byte){}, parts: map[string]*partial{}}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	ready := make(chan struct{})
	b.wg.Add(2)
	go b.listen(ready)
	go b.send()
	select {
	case <-ready:
		return b, nil
	case <-ctx.Done():
		b.Close()
		return nil, &renkei.Error{Op: "pgbus.Open", Kind: renkei.Unavailable, Message: "cannot listen for other nodes' messages on PostgreSQL", Err: ctx.Err()}
	}
}

// Close stops listening and sending, and ends every lease this bus holds (their jobs' contexts end).
func (b *Bus) Close() {
	b.cancel()
	b.wg.Wait()
	b.db.Close()
}

// Listen registers fn for the bodies other nodes send on topic. fn runs on the listening goroutine: it must not
// block.
func (b *Bus) Listen(topic string, fn func(body []byte)) {
	b.mu.Lock()
	b.topic[topic] = append(b.topic[topic], fn)
	b.mu.Unlock()
}

// Send queues body (JSON) for every other node's handlers of topic and returns without waiting. A body larger than
// MaxBody is refused (Invalid); one that does not fit one NOTIFY goes in parts, which arrive together. When the
// queue is full (PostgreSQL unreachable) the message is dropped (Unavailable).
func (b *Bus) Send(topic string, body []byte) error {
	if len(body) > MaxBody {
		return renkei.Errorf("pgbus.Send", renkei.Invalid, "a message of %d bytes is too large to send to other nodes", len(body))
	}
	p, _ := json.Marshal(envelope{Node: b.Node, Topic: topic, Body: body})
	if len(p) <= MaxPayload {
		return b.enqueue([]string{string(p)})
	}
	id := make([]byte, 6)
	rand.Read(id)
	enc := base64.StdEncoding.EncodeToString(body)
	size := MaxPayload - 200
	n := (len(enc) + size - 1) / size
	var all []string
	for i := range n {
		part := enc[i*size : min(len(enc), (i+1)*size)]
		p, _ := json.Marshal(envelope{Node: b.Node, Topic: topic, ID: hex.EncodeToString(id), I: i, N: n, Part: part})
		all = append(all, string(p))
	}
	return b.enqueue(all)
}

// enqueue queues the payloads of one message; its parts stay together and in order.
func (b *Bus) enqueue(payloads []string) error {
	select {
	case b.out <- strings.Join(payloads, "\x00"):
		return nil
	default:
		return renkei.Errorf("pgbus.Send", renkei.Unavailable, "the queue to other nodes is full")
	}
}

// send sends what is queued, as many messages as are waiting in one statement (one round trip, one transaction: the
// parts of a message arrive together and in order; PostgreSQL drops duplicates within a transaction).
func (b *Bus) send() {
	defer b.wg.Done()
	for {
		var batch []string
		select {
		case <-b.ctx.Done():
			return
		case m := <-b.out:
			batch = append(batch, strings.Split(m, "\x00")...)
		}
	more:
		for len(batch) < 256 {
			select {
			case m := <-b.out:
				batch = append(batch, strings.Split(m, "\x00")...)
			default:
				break more
			}
		}
		for attempt := 0; ; attempt++ {
			ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
			_, err := b.db.ExecContext(ctx, `SELECT pg_notify($1, p) FROM unnest($2::text[]) WITH ORDINALITY AS x(p, i) ORDER BY i`, Channel, batch)
			cancel()
			if err == nil || b.ctx.Err() != nil {
				break
			}
			if attempt == 2 {
				b.Logger.Warn("messages to other nodes dropped", "count", len(batch), "err", err)
				break
			}
			time.Sleep(time.Duration(attempt+1) * 200 * time.Millisecond)
		}
	}
}

// listen holds a dedicated connection that LISTENs, and reconnects with backoff (100 ms doubling to 5 s) when it
// breaks. ready is closed after the first LISTEN.
func (b *Bus) listen(ready chan struct{}) {
	defer b.wg.Done()
	backoff := 100 * time.Millisecond
	first := true
	for b.ctx.Err() == nil {
		err := b.listenOnce(func() {
			backoff = 100 * time.Millisecond
			if first {
				first = false
				close(ready)
			}
		})
		if b.ctx.Err() != nil {
			return
		}
		b.Logger.Warn("listening for other nodes' messages: reconnecting", "err", err, "in", backoff)
		select {
		case <-b.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (b *Bus) listenOnce(listening func()) error {
	conf, err := pgx.ParseConfig(b.url)
	if err != nil {
		return err
	}
	conf.RuntimeParams["application_name"] = "renkei listen " + b.Node
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	conn, err := pgx.ConnectConfig(ctx, conf)
	cancel()
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(b.ctx, `LISTEN `+Channel); err != nil {
		return err
	}
	listening()
	for {
		n, err := conn.WaitForNotification(b.ctx)
		if err != nil {
			return err
		}
		b.deliver(n.Payload)
	}
}

// deliver hands a payload from another node to the handlers of its topic, once all its parts are in.
func (b *Bus) deliver(payload string) {
	var e envelope
	if err := json.Unmarshal([]byte(payload), &e); err != nil || e.Node == b.Node {
		return
	}
	body := []byte(e.Body)
	if e.ID != "" {
		body = b.assemble(e)
		if body == nil {
			return
		}
	}
	b.mu.Lock()
	fns := b.topic[e.Topic]
	b.mu.Unlock()
	for _, fn := range fns {
		fn(body)
	}
}

// assemble keeps a part and returns the whole body when it is complete. Parts of one message arrive together
// (one transaction): a message still incomplete after a minute lost its other parts, and is forgotten.
func (b *Bus) assemble(e envelope) []byte {
	if e.N <= 0 || e.N > MaxBody/100 || e.I < 0 || e.I >= e.N {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	for k, p := range b.parts {
		if now.Sub(p.at) > time.Minute {
			delete(b.parts, k)
		}
	}
	key := e.Node + "/" + e.ID
	p := b.parts[key]
	if p == nil {
		p = &partial{n: e.N, parts: make([][]byte, e.N), at: now}
		b.parts[key] = p
	}
	if p.n != e.N || p.parts[e.I] != nil {
		return nil
	}
	p.parts[e.I] = []byte(e.Part)
	if p.got++; p.got < p.n {
		return nil
	}
	delete(b.parts, key)
	var enc []byte
	for _, x := range p.parts {
		enc = append(enc, x...)
	}
	body, err := base64.StdEncoding.DecodeString(string(enc))
	if err != nil {
		return nil
	}
	return body
}

// LeaseKey is the advisory lock key of a named lease: "renkei lease NAME" hashed, so that it does not meet the
// index's own keys.
func LeaseKey(name string) int64 {
	h := fnv.New64a()
	h.Write([]byte("renkei lease " + name))
	return int64(h.Sum64() >> 1)
}

// Lease runs job on this node while it holds the lease name, until ctx ends or the bus closes; it returns when the
// job has returned. The lease is a session advisory lock (pg_try_advisory_lock) on a connection of its own: when
// that connection dies, with the node or alone, PostgreSQL releases the lock and another node takes the lease. A
// holder checks its connection every Check and ends the job's context when it fails; a new holder waits one Check
// and a little more before starting, so that two nodes do not run the job together. A job that returns early is
// started again (after Retry) while the lease is held.
func (b *Bus) Lease(ctx context.Context, name string, job func(ctx context.Context)) {
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		select {
		case <-b.ctx.Done():
			stop()
		case <-ctx.Done():
		}
	}()
	log := b.Logger.With("lease", name)
	for ctx.Err() == nil {
		held, err := b.holdLease(ctx, name, job)
		if err != nil && ctx.Err() == nil {
			log.Warn("lease", "err", err)
		}
		if held {
			log.Info("lease released")
		}
		select {
		case <-ctx.Done():
		case <-time.After(b.retry()):
		}
	}
}

func (b *Bus) check() time.Duration {
	if b.Check <= 0 {
		return time.Second
	}
	return b.Check
}

func (b *Bus) retry() time.Duration {
	if b.Retry <= 0 {
		return 2 * time.Second
	}
	return b.Retry
}

// holdLease connects, tries the lock until it is taken, and runs the job while the connection answers.
func (b *Bus) holdLease(ctx context.Context, name string, job func(ctx context.Context)) (held bool, err error) {
	conf, err := pgx.ParseConfig(b.url)
	if err != nil {
		return false, err
	}
	conf.RuntimeParams["application_name"] = "renkei lease " + name + " " + b.Node
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := pgx.ConnectConfig(cctx, conf)
	cancel()
	if err != nil {
		return false, err
	}
	defer conn.Close(context.Background())
	key := LeaseKey(name)
	for {
		var ok bool
		qctx, cancel := context.WithTimeout(ctx, b.check())
		err := conn.QueryRow(qctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&ok)
		cancel()
		if err != nil {
			return false, err
		}
		if ok {
			break
		}
		select {
		case <-ctx.Done():
			return false, nil
		case <-time.After(b.retry()):
		}
	}
	// The previous holder may not have noticed yet that its connection died: give it one check to stop.
	select {
	case <-ctx.Done():
		return true, nil
	case <-time.After(b.check() + b.check()/4):
	}
	if err := conn.Ping(ctx); err != nil {
		return true, err
	}
	b.Logger.Info("lease taken: this node runs the job", "lease", name)
	jctx, endJob := context.WithCancel(ctx)
	defer endJob()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for jctx.Err() == nil {
			job(jctx)
			select {
			case <-jctx.Done():
			case <-time.After(b.retry()):
			}
		}
	}()
	t := time.NewTicker(b.check())
	defer t.Stop()
	for {
		select {
		case <-done:
			return true, nil
		case <-ctx.Done():
			<-done
			return true, nil
		case <-t.C:
			pctx, cancel := context.WithTimeout(ctx, b.check())
			err := conn.Ping(pctx)
			cancel()
			if err != nil && ctx.Err() == nil {
				endJob()
				<-done
				return true, fmt.Errorf("lost the lease's connection: %w", err)
			}
		}
	}
}
