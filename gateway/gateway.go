package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"renkei/dimse"
)

// Config is what `renkei gateway` is told.
type Config struct {
	Server string // renkei's base URL
	Token  string // a read-write API token of the hospital's institution
	Client *http.Client
	// DIMSE is the address of the Storage SCP for the local modalities; AE its AE title.
	DIMSE, AE string
	Spool     string
	// Reserve is the free space the spool keeps on its disk; below it C-STORE answers 0xA700 and new associations are
	// rejected (transient).
	Reserve int64
	// Status is the address of the local status page ("" or "off": none).
	Status string
	// Encoding is the Content-Encoding of uploads: zstd, gzip or none.
	Encoding string
	Parallel int
	// Heartbeat is how often the gateway reports its queue to renkei.
	Heartbeat time.Duration
	Name      string // how renkei's admin page names this gateway (default: the host name)
	Version   string
	Logger    *slog.Logger
	// Modalities maps calling AE titles to host:port, for storage commitment results reported on a new association.
	Modalities map[string]string
	// CommitWait is how long a storage commitment answer waits on the modality's association for renkei to
	// acknowledge the images before it is kept and reported later (default 10 s).
	CommitWait time.Duration
	// Destinations maps the AE titles of the hospital's PACS to host:port: what other institutions share with the
	// hospital is delivered there (none: nothing is fetched). InboxPoll is how often renkei is asked (default 1 min).
	Destinations map[string]string
	InboxPoll    time.Duration
	// FetchFrom is the hospital's PACS (AE title and host:port) that renkei's requests for a patient's earlier
	// studies are answered from (C-FIND, C-MOVE to the gateway); empty: such requests are not answered.
	FetchFromAE, FetchFromAddr string
	// Ready, when set, is called with the DIMSE and status addresses once both listen.
	Ready func(dimse, status net.Addr)
}

// Gateway is a running gateway: SCP, spool, uploader, heartbeat and status page.
type Gateway struct {
	cfg   Config
	spool *Spool
	up    *Uploader
	log   *slog.Logger

	mu      sync.Mutex
	conn    Connection
	sent    time.Time
	inbound *Deliverer
	fetcher *Fetcher
}

// Connection is what the gateway knows of its line to renkei.
type Connection struct {
	State       string    `json:"state"` // "connected", "unreachable", "refused" (token), "starting"
	Since       time.Time `json:"since,omitzero"`
	LastContact time.Time `json:"lastContact,omitzero"`
	LastError   string    `json:"lastError,omitempty"`
}

// Status is the gateway's state as the status page, `renkei gateway status` and renkei's heartbeat see it.
type Status struct {
	Name       string     `json:"name"`
	Version    string     `json:"version,omitempty"`
	Server     string     `json:"server"`
	AE         string     `json:"ae"`
	DIMSE      string     `json:"dimse"`
	PID        int        `json:"pid,omitempty"`
	Running    bool       `json:"running"`
	Updated    time.Time  `json:"updated"`
	Stopped    string     `json:"stopped,omitempty"` // why the gateway stopped, in plain words
	Connection Connection `json:"connection"`
	Queue      QueueJSON  `json:"queue"`
	LastSent   time.Time  `json:"lastSent,omitzero"`
	Failures   []Failure  `json:"failures,omitempty"`
	// Parked are the instances renkei refused for good: kept on disk, no longer sent, not in Queue (park.go).
	Parked ParkedJSON `json:"parked,omitzero"`
	// Inbound is the delivery of shared images to the hospital's PACS, when configured.
	Inbound *InboundStatus `json:"inbound,omitempty"`
	// Fetch is the answering of renkei's requests for earlier studies from the PACS, when configured.
	Fetch    *FetchStatus `json:"fetch,omitempty"`
	DiskFree int64        `json:"diskFree"`
	Reserve  int64        `json:"reserve"`
}

// QueueJSON is the queue in a status.
type QueueJSON struct {
	Instances int       `json:"instances"`
	Studies   int       `json:"studies"`
	Bytes     int64     `json:"bytes"`
	Oldest    time.Time `json:"oldest,omitzero"`
}

// Failure is one instance whose last attempt failed.
type Failure struct {
	SOPInstanceUID   string    `json:"sopInstanceUID"`
	StudyInstanceUID string    `json:"studyInstanceUID"`
	CallingAE        string    `json:"callingAE,omitempty"`
	Attempts         int       `json:"attempts"`
	At               time.Time `json:"at"`
	Error            string    `json:"error"`
}

// Run runs the gateway until ctx ends (nil) or renkei refuses its token (ErrTokenRefused, ErrTokenReadOnly). It
// first checks the token with a heartbeat: a gateway with a refused token does not start.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Logger == nil {
		cfg.Logger = orDiscard(nil)
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Minute}
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = time.Minute
	}
	if cfg.Name == "" {
		cfg.Name, _ = os.Hostname()
	}
	switch cfg.Encoding {
	case "none":
		cfg.Encoding = ""
	case "", "gzip", "zstd":
	default:
		return fmt.Errorf("--encoding %q: use zstd, gzip or none", cfg.Encoding)
	}
	// One process changes the spool at a time: this gateway while it runs, or a `renkei gateway retry|discard` for a
	// moment when none runs (park.go). A second gateway on the same spool is refused.
	if err := os.MkdirAll(cfg.Spool, 0o700); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	unlock, ok, err := lockSpool(cfg.Spool, 10*time.Second)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("the spool %s is in use: another gateway runs with it, or a renkei gateway retry/discard/parked "+
			"command has held it for over 10 s (%s/lock); stop the other process and start again", cfg.Spool, cfg.Spool)
	}
	defer unlock()
	sp, err := Open(cfg.Spool, cfg.Reserve)
	if err != nil {
		return err
	}
	ledger, err := OpenLedger(filepath.Join(cfg.Spool, "sent"), 7*24*time.Hour)
	if err != nil {
		return err
	}
	defer ledger.Close()
	if cfg.CommitWait <= 0 {
		cfg.CommitWait = 10 * time.Second
	}
	commits := &Commitments{Dir: filepath.Join(cfg.Spool, "commit"), Spool: sp, Ledger: ledger, Wait: cfg.CommitWait,
		Modalities: cfg.Modalities, AE: cfg.AE, Logger: cfg.Logger}
	g := &Gateway{cfg: cfg, spool: sp, log: cfg.Logger, conn: Connection{State: "starting", Since: time.Now()}}
	g.up = &Uploader{Spool: sp, Server: cfg.Server, Token: cfg.Token, Client: cfg.Client, Parallel: cfg.Parallel,
		Encoding: cfg.Encoding, Logger: cfg.Logger, Contact: g.contact, Ledger: ledger, Refused: commits.Changed, Sent: func(Entry) {
			g.mu.Lock()
			g.sent = time.Now()
			g.mu.Unlock()
			commits.Changed()
		}}
	if len(cfg.Destinations) > 0 {
		// The delivered ledger is kept long: a share may stay active for months, and what was delivered once is not
		// sent to the PACS again.
		delivered, err := OpenLedger(filepath.Join(cfg.Spool, "delivered"), 400*24*time.Hour)
		if err != nil {
			return err
		}
		defer delivered.Close()
		g.inbound = &Deliverer{Server: cfg.Server, Token: cfg.Token, Client: cfg.Client, Destinations: cfg.Destinations, AE: cfg.AE,
			Ledger: delivered, Poll: cfg.InboxPoll, Logger: cfg.Logger}
	}
	if cfg.FetchFromAE != "" {
		g.fetcher = &Fetcher{Server: cfg.Server, Token: cfg.Token, Client: cfg.Client, PACSAE: cfg.FetchFromAE, PACSAddr: cfg.FetchFromAddr,
			AE: cfg.AE, Poll: cfg.InboxPoll, AuditLog: filepath.Join(cfg.Spool, "audit.log"), Logger: cfg.Logger}
	}
	if err := g.heartbeat(ctx); err != nil {
		if errors.Is(err, ErrTokenRefused) || errors.Is(err, ErrTokenReadOnly) {
			g.stopped(err)
			return err
		}
		// renkei may be down: the gateway still takes images from the modalities and sends them later.
		g.log.Warn("gateway: renkei cannot be reached now; images are kept and sent when it can", "err", err)
	}

	scp := &SCP{Spool: sp, Arrived: g.up.Wake, Logger: cfg.Logger}
	handlers := scp.Handlers()
	handlers.Commit = commits
	handlers.MoveDestination = func(_ context.Context, _ *dimse.Association, ae string) (string, bool) {
		addr, ok := cfg.Modalities[ae]
		return addr, ok
	}
	srv := &dimse.Server{AETitle: cfg.AE, Handlers: handlers, AcceptAE: scp.AcceptAE, MaxAssociations: 32,
		IdleTimeout: 5 * time.Minute, Logger: cfg.Logger.With("transport", "dimse")}
	ln, err := net.Listen("tcp", cfg.DIMSE)
	if err != nil {
		return fmt.Errorf("--dimse %s: %w", cfg.DIMSE, err)
	}
	var statusLn net.Listener
	var statusSrv *http.Server
	if cfg.Status != "" && cfg.Status != "off" {
		if statusLn, err = net.Listen("tcp", cfg.Status); err != nil {
			ln.Close()
			return fmt.Errorf("--status %s: %w", cfg.Status, err)
		}
		statusSrv = &http.Server{Handler: g.statusHandler(), ReadHeaderTimeout: 10 * time.Second}
		go statusSrv.Serve(statusLn)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := srv.Serve(ln); err != nil && ctx.Err() == nil {
			g.log.Error("gateway: DIMSE server", "err", err)
		}
	}()
	if cfg.Ready != nil {
		var sa net.Addr
		if statusLn != nil {
			sa = statusLn.Addr()
		}
		cfg.Ready(ln.Addr(), sa)
	}
	g.log.Info("gateway ready", "dimse", ln.Addr().String(), "ae", cfg.AE, "server", cfg.Server, "spool", cfg.Spool, "encoding", cfg.Encoding)

	wg.Add(1)
	go func() {
		defer wg.Done()
		commits.Run(ctx)
	}()
	fatal := make(chan error, 4)
	if g.fetcher != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := g.fetcher.Run(ctx); err != nil {
				fatal <- err
			}
		}()
	}
	if g.inbound != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := g.inbound.Run(ctx); err != nil {
				fatal <- err
			}
		}()
	}
	wg.Add(3)
	go func() {
		// The operator's retry or discard of parked instances (renkei gateway retry|discard, park.go), on its own so
		// that a heartbeat waiting for an unreachable renkei does not keep the command waiting.
		defer wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if sp.serveRequests(g.log) {
					g.up.Wake()
				}
			}
		}
	}()
	go func() {
		defer wg.Done()
		if err := g.up.Run(ctx); err != nil {
			fatal <- err
		}
	}()
	go func() {
		defer wg.Done()
		t := time.NewTicker(cfg.Heartbeat)
		defer t.Stop()
		save := time.NewTicker(5 * time.Second)
		defer save.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-save.C:
				g.saveStatus()
			case <-t.C:
				if err := g.heartbeat(ctx); errors.Is(err, ErrTokenRefused) || errors.Is(err, ErrTokenReadOnly) {
					fatal <- err
					return
				}
			}
		}
	}()
	var out error
	select {
	case <-ctx.Done():
	case out = <-fatal:
		g.log.Error("gateway: stopping", "reason", out)
	}
	cancel()
	// Associations in progress finish their C-STOREs (each answered only once on disk) for a few seconds.
	dctx, ddone := context.WithTimeout(context.Background(), 5*time.Second)
	srv.Shutdown(dctx)
	ddone()
	if statusSrv != nil {
		sctx, done := context.WithTimeout(context.Background(), 2*time.Second)
		statusSrv.Shutdown(sctx)
		done()
	}
	wg.Wait()
	if out != nil {
		g.stopped(out)
	} else {
		g.stopped(errors.New("stopped by the operator"))
	}
	return out
}

// contact records whether renkei answered a request.
func (g *Gateway) contact(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	state := "connected"
	switch {
	case errors.Is(err, ErrTokenRefused) || errors.Is(err, ErrTokenReadOnly):
		state = "refused"
		g.conn.LastError = err.Error()
	case err != nil:
		state = "unreachable"
		g.conn.LastError = err.Error()
	default:
		g.conn.LastContact = now
	}
	if state != g.conn.State {
		prev := g.conn.State
		g.conn.State, g.conn.Since = state, now
		if state == "connected" && prev != "starting" {
			g.log.Info("gateway: renkei answers again")
			if g.up != nil {
				g.up.Resume() // what waited for the line goes now, not after the backoff
			}
		}
	}
}

// Status reads the gateway's state now.
func (g *Gateway) Status() Status {
	q, err := g.spool.Summary()
	if err != nil {
		g.log.Error("gateway: cannot read the spool", "err", err)
	}
	free, _ := g.spool.Free()
	g.mu.Lock()
	st := Status{Name: g.cfg.Name, Version: g.cfg.Version, Server: g.cfg.Server, AE: g.cfg.AE, DIMSE: g.cfg.DIMSE, PID: os.Getpid(),
		Running: true, Updated: time.Now(), Connection: g.conn, LastSent: g.sent, DiskFree: free, Reserve: g.cfg.Reserve,
		Queue: QueueJSON{q.Instances, q.Studies, q.Bytes, q.Oldest}, Parked: q.Parked}
	g.mu.Unlock()
	for i, f := range q.Failures {
		if i == 20 {
			break
		}
		st.Failures = append(st.Failures, Failure{f.SOPInstanceUID, f.StudyInstanceUID, f.CallingAETitle, f.Attempts, f.LastAttempt, f.LastError})
	}
	if g.inbound != nil {
		in := g.inbound.Status()
		st.Inbound = &in
	}
	if g.fetcher != nil {
		fs := g.fetcher.Status()
		st.Fetch = &fs
	}
	return st
}

// saveStatus keeps the status in the spool directory for `renkei gateway status`.
func (g *Gateway) saveStatus() Status {
	st := g.Status()
	if err := WriteStatus(g.spool.Dir, st); err != nil {
		g.log.Warn("gateway: cannot save its status", "err", err)
	}
	return st
}

func (g *Gateway) stopped(why error) {
	st := g.Status()
	st.Running, st.Stopped = false, why.Error()
	if err := WriteStatus(g.spool.Dir, st); err != nil {
		g.log.Warn("gateway: cannot save its status", "err", err)
	}
}

// WriteStatus saves a status as status.json in the spool directory (atomically; not fsynced: it is informative).
func WriteStatus(dir string, st Status) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := dir + "/status.json.tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, dir+"/status.json")
}

// ReadStatus reads the status a gateway saved in its spool directory, with the queue read from the spool now.
func ReadStatus(dir string) (Status, error) {
	var st Status
	b, err := os.ReadFile(dir + "/status.json")
	switch {
	case errors.Is(err, os.ErrNotExist):
		st.Stopped = "no gateway has run with this spool yet"
	case err != nil:
		return st, err
	default:
		if err := json.Unmarshal(b, &st); err != nil {
			return st, fmt.Errorf("%s/status.json: %w", dir, err)
		}
	}
	if _, err := os.Stat(dir + "/objects"); err != nil {
		return st, fmt.Errorf("%s is not a gateway spool: %w", dir, err)
	}
	sp := &Spool{Dir: dir}
	q, err := sp.Summary()
	if err != nil {
		return st, err
	}
	st.Queue = QueueJSON{q.Instances, q.Studies, q.Bytes, q.Oldest}
	st.Parked = q.Parked
	st.Failures = nil
	for i, f := range q.Failures {
		if i == 20 {
			break
		}
		st.Failures = append(st.Failures, Failure{f.SOPInstanceUID, f.StudyInstanceUID, f.CallingAETitle, f.Attempts, f.LastAttempt, f.LastError})
	}
	// A status not refreshed for a while belongs to a gateway that is no longer running (killed or powered off).
	if st.Running && time.Since(st.Updated) > 30*time.Second {
		st.Running = false
		st.Stopped = "the gateway is not running (its status was last written " + st.Updated.Format(time.DateTime) + ")"
	}
	return st, nil
}

// Heartbeat is what a gateway tells renkei each minute (POST /api/gateways/heartbeat). renkei refuses fields it
// does not know, and older servers run beside newer gateways: parked instances travel in Failures (each one needs a
// person, as a failure does) and LastError (how many, and renkei's last reason, in words), which renkei's admin page
// shows as "some images refused", rather than in a field of their own.
type Heartbeat struct {
	Name      string    `json:"name"`
	Version   string    `json:"version,omitempty"`
	AE        string    `json:"ae"`
	Instances int       `json:"instances"`
	Studies   int       `json:"studies"`
	Bytes     int64     `json:"bytes"`
	Oldest    time.Time `json:"oldest,omitzero"`
	LastSent  time.Time `json:"lastSent,omitzero"`
	Failures  int       `json:"failures"`
	LastError string    `json:"lastError,omitempty"`
	DiskFree  int64     `json:"diskFree"`
}

// heartbeat reports the queue to renkei.
func (g *Gateway) heartbeat(ctx context.Context) error {
	st := g.saveStatus()
	hb := Heartbeat{Name: st.Name, Version: st.Version, AE: st.AE, Instances: st.Queue.Instances, Studies: st.Queue.Studies,
		Bytes: st.Queue.Bytes, Oldest: st.Queue.Oldest, LastSent: st.LastSent, Failures: len(st.Failures), DiskFree: st.DiskFree}
	if len(st.Failures) > 0 {
		hb.LastError = st.Failures[0].Error
	}
	if p := st.Parked; p.Instances > 0 {
		hb.Failures += p.Instances
		_, en := ParkedWords(p.Studies[0].Kind)
		hb.LastError = fmt.Sprintf("%d image(s) of %d study(ies) parked on the gateway, no longer sent: %s (%s). On the gateway: renkei gateway parked, then retry or discard",
			p.Instances, len(p.Studies), en, p.Studies[0].Reason)
	}
	b, _ := json.Marshal(hb)
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, "POST", strings.TrimSuffix(g.cfg.Server, "/")+"/api/gateways/heartbeat", bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+g.cfg.Token)
	resp, err := g.cfg.Client.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			g.contact(err)
		}
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		err = ErrTokenRefused
	case resp.StatusCode == http.StatusForbidden:
		err = ErrTokenReadOnly
	case resp.StatusCode/100 != 2:
		err = fmt.Errorf("renkei answered the heartbeat with %s: %s", resp.Status, problemDetail(body))
	}
	g.contact(err)
	return err
}

// orDiscard is l, or a logger that writes nothing when l is nil (the parts' Logger fields are optional).
func orDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

// pause waits d, or until ctx ends; it reports whether the caller should go on.
func pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
