package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"renkei/dicom"
	"renkei/dimse"
	"renkei/internal/fsync"
)

// Ledger remembers which instances renkei acknowledged, so that a storage commitment request that comes after they
// left the spool is still answered "committed". It is a folder of daily files (sent/2006-01-02.log, one line
// "SOPInstanceUID SOPClassUID unix-ms" per instance), appended and fsynced before the instances leave the spool, and
// kept for Retention.
type Ledger struct {
	dir       string
	retention time.Duration

	mu   sync.Mutex
	f    *os.File
	day  string
	sent map[string]string // SOP Instance UID → SOP Class UID
}

// OpenLedger reads the ledger's recent days and removes the older ones.
func OpenLedger(dir string, retention time.Duration) (*Ledger, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	l := &Ledger{dir: dir, retention: retention, sent: map[string]string{}}
	files, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	oldest := time.Now().Add(-retention).Format(time.DateOnly)
	for _, f := range files {
		day, ok := strings.CutSuffix(f.Name(), ".log")
		if !ok {
			continue
		}
		if day < oldest {
			os.Remove(filepath.Join(dir, f.Name()))
			continue
		}
		if err := l.load(filepath.Join(dir, f.Name())); err != nil {
			return nil, err
		}
	}
	return l, nil
}

func (l *Ledger) load(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// A line cut short by a crash has fewer fields: the instance is then still in the spool and is sent again.
		if fields := strings.Fields(sc.Text()); len(fields) == 3 {
			l.sent[fields[0]] = fields[1]
		}
	}
	return sc.Err()
}

// Record appends acknowledged instances and makes them durable.
func (l *Ledger) Record(entries []Entry) error {
	if len(entries) == 0 {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if day := now.Format(time.DateOnly); day != l.day || l.f == nil {
		if l.f != nil {
			l.f.Close()
		}
		f, err := os.OpenFile(filepath.Join(l.dir, day+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			return fullOr(err)
		}
		if err := fsync.Dir(l.dir); err != nil {
			f.Close()
			return err
		}
		l.f, l.day = f, day
		l.prune(now)
	}
	var b strings.Builder
	for _, e := range entries {
		fmt.Fprintf(&b, "%s %s %d\n", e.SOPInstanceUID, orDash(e.SOPClassUID), now.UnixMilli())
	}
	if _, err := io.WriteString(l.f, b.String()); err != nil {
		return fullOr(err)
	}
	if err := l.f.Sync(); err != nil {
		return fullOr(err)
	}
	for _, e := range entries {
		l.sent[e.SOPInstanceUID] = orDash(e.SOPClassUID)
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// prune removes days older than the retention (the in-memory set keeps them until the next start).
func (l *Ledger) prune(now time.Time) {
	oldest := now.Add(-l.retention).Format(time.DateOnly)
	files, _ := os.ReadDir(l.dir)
	for _, f := range files {
		if day, ok := strings.CutSuffix(f.Name(), ".log"); ok && day < oldest {
			os.Remove(filepath.Join(l.dir, f.Name()))
		}
	}
}

// Has reports whether renkei acknowledged the instance, and its SOP class.
func (l *Ledger) Has(sop string) (class string, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	class, ok = l.sent[sop]
	return class, ok
}

// Close closes the current day's file.
func (l *Ledger) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// Storage commitment failure reasons (PS3.4 J.3.3.1.1.1).
const (
	reasonProcessingFailure uint16 = 0x0110
	reasonNoSuchInstance    uint16 = 0x0112
	reasonClassMismatch     uint16 = 0x0119
)

// Commitments is the gateway's Storage Commitment SCP: an instance is committed once renkei acknowledged it, not when
// it is on the gateway's disk, so that "committed" on the modality means "safe in renkei". While renkei has not yet
// acknowledged every referenced instance (the line is down), the request is kept on disk (commit/<transaction>.json)
// and reported later on a new association to the modality's address.
type Commitments struct {
	Dir    string // commit/ in the spool
	Spool  *Spool
	Ledger *Ledger
	// Wait is how long the answer waits on the modality's association before the request is kept for later.
	Wait time.Duration
	// Modalities maps calling AE titles to host:port, where results that could not go back on the association are
	// sent.
	Modalities map[string]string
	AE         string // the gateway's AE title: the calling AE of later reports
	Dialer     *dimse.Dialer
	Logger     *slog.Logger

	once    sync.Once
	changed chan struct{}
}

type pendingCommit struct {
	TransactionUID string               `json:"transactionUID"`
	CallingAE      string               `json:"callingAE"`
	References     []dimse.SOPReference `json:"references"`
	Received       time.Time            `json:"received"`
}

func (c *Commitments) init() {
	c.once.Do(func() { c.changed = make(chan struct{}, 1) })
}

// Changed tells waiting commitments that instances were acknowledged or refused.
func (c *Commitments) Changed() {
	c.init()
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

func (c *Commitments) logger() *slog.Logger {
	return orDiscard(c.Logger)
}

// resolve sorts references into committed (renkei acknowledged them), failed (renkei refused them, or the gateway
// never received them) and pending.
func (c *Commitments) resolve(refs []dimse.SOPReference) (committed, failed []dimse.SOPReference, pending int, err error) {
	// The spool first, then the ledger: an instance is recorded in the ledger before it leaves the spool, so it is
	// seen in one of them whatever happens between the two reads.
	all, err := c.Spool.List()
	if err != nil {
		return nil, nil, 0, err
	}
	spooled := make(map[string]Entry, len(all))
	for _, e := range all {
		spooled[e.SOPInstanceUID] = e
	}
	for _, r := range refs {
		if e, ok := spooled[r.SOPInstanceUID]; ok && e.refused() {
			// renkei refused what the modality sent last under this UID (a corrected resend whose first version renkei
			// holds): renkei does not hold that content, whatever the ledger says of the first.
			r.FailureReason = reasonProcessingFailure
			failed = append(failed, r)
			continue
		}
		if class, ok := c.Ledger.Has(r.SOPInstanceUID); ok {
			if class != "-" && r.SOPClassUID != "" && class != r.SOPClassUID {
				r.FailureReason = reasonClassMismatch
				failed = append(failed, r)
			} else {
				committed = append(committed, r)
			}
			continue
		}
		e, ok := spooled[r.SOPInstanceUID]
		switch {
		case !ok:
			r.FailureReason = reasonNoSuchInstance
			failed = append(failed, r)
		case e.refused():
			// renkei refused it (not a line or server failure): a person must look; the instance stays in the spool.
			r.FailureReason = reasonProcessingFailure
			failed = append(failed, r)
		default:
			pending++
		}
	}
	return committed, failed, pending, nil
}

// Commit answers on the modality's association when renkei acknowledged (or refused) everything within Wait; else
// it keeps the request and returns (nil, nil): Run reports it later.
func (c *Commitments) Commit(ctx context.Context, a *dimse.Association, req *dimse.CommitRequest) (committed, failed []dimse.SOPReference) {
	c.init()
	log := c.logger().With("calling_ae", a.Peer().CallingAETitle, "transaction", req.TransactionUID, "instances", len(req.References))
	deadline := time.Now().Add(c.Wait)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		committed, failed, pending, err := c.resolve(req.References)
		if err == nil && pending == 0 {
			log.Info("gateway: storage commitment answered", "committed", len(committed), "failed", len(failed))
			if committed == nil {
				committed = []dimse.SOPReference{} // all failed: still a result to report now
			}
			return committed, failed
		}
		if err != nil || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		select {
		case <-c.changed:
		case <-tick.C:
		case <-ctx.Done():
		}
	}
	p := pendingCommit{TransactionUID: req.TransactionUID, CallingAE: a.Peer().CallingAETitle, References: req.References, Received: time.Now()}
	if err := c.save(p); err != nil {
		log.Error("gateway: storage commitment cannot be kept; the modality will not hear back and should ask again", "err", err)
		return nil, req.References
	}
	log.Info("gateway: storage commitment waits for renkei; it is reported when renkei has the images")
	return nil, nil
}

func (c *Commitments) path(tx string) string { return filepath.Join(c.Dir, tx+".json") }

func (c *Commitments) save(p pendingCommit) error {
	if !dicom.ValidUID(p.TransactionUID) {
		return fmt.Errorf("invalid transaction UID %q", p.TransactionUID)
	}
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return err
	}
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(c.Dir, "tmp-*")
	if err != nil {
		return fullOr(err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), c.path(p.TransactionUID))
	}
	if err != nil {
		os.Remove(f.Name())
		return fullOr(err)
	}
	return fsync.Dir(c.Dir)
}

// Pending returns the kept requests, oldest first.
func (c *Commitments) Pending() ([]pendingCommit, error) {
	files, err := os.ReadDir(c.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []pendingCommit
	for _, f := range files {
		if strings.HasPrefix(f.Name(), "tmp-") {
			os.Remove(filepath.Join(c.Dir, f.Name())) // cut short by a crash: never acknowledged as kept
			continue
		}
		if !strings.HasSuffix(f.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(c.Dir, f.Name()))
		if err != nil {
			return nil, err
		}
		var p pendingCommit
		if err := json.Unmarshal(b, &p); err != nil {
			c.logger().Error("gateway: unreadable kept storage commitment, removed", "file", f.Name(), "err", err)
			os.Remove(filepath.Join(c.Dir, f.Name()))
			continue
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Received.Before(out[j].Received) })
	return out, nil
}

// Run reports kept requests as renkei acknowledges their instances, until ctx ends. A modality that cannot be reached
// is tried again with a growing wait; a request from an AE with no address (--modality) is logged and dropped.
func (c *Commitments) Run(ctx context.Context) {
	c.init()
	next := map[string]time.Time{}
	tries := map[string]int{}
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		pending, err := c.Pending()
		if err != nil {
			c.logger().Error("gateway: cannot read kept storage commitments", "err", err)
		}
		for _, p := range pending {
			if time.Now().Before(next[p.TransactionUID]) {
				continue
			}
			committed, failed, n, err := c.resolve(p.References)
			if err != nil || n > 0 {
				continue
			}
			log := c.logger().With("calling_ae", p.CallingAE, "transaction", p.TransactionUID)
			addr, ok := c.Modalities[p.CallingAE]
			if !ok {
				log.Error("gateway: storage commitment result cannot be sent: no address for this AE (add it with --modality AE=host:port)")
				os.Remove(c.path(p.TransactionUID))
				continue
			}
			d := c.Dialer
			if d == nil {
				d = &dimse.Dialer{Logger: c.Logger}
			}
			rctx, cancel := context.WithTimeout(ctx, time.Minute)
			err = d.ReportCommitment(rctx, addr, c.AE, p.CallingAE, p.TransactionUID, committed, failed)
			cancel()
			if err != nil {
				tries[p.TransactionUID]++
				wait := min(time.Second<<min(tries[p.TransactionUID], 10), 15*time.Minute)
				next[p.TransactionUID] = time.Now().Add(wait)
				log.Warn("gateway: storage commitment result not delivered; will try again", "addr", addr, "in", wait, "err", err)
				continue
			}
			log.Info("gateway: storage commitment reported", "committed", len(committed), "failed", len(failed), "after", time.Since(p.Received).Round(time.Second))
			os.Remove(c.path(p.TransactionUID))
			fsync.Dir(c.Dir)
			delete(next, p.TransactionUID)
			delete(tries, p.TransactionUID)
		}
		select {
		case <-ctx.Done():
			return
		case <-c.changed:
		case <-tick.C:
		}
	}
}

// ParseModalities reads "AE=host:port,AE2=host:port".
func ParseModalities(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		ae, addr, ok := strings.Cut(item, "=")
		host, port, err := splitHostPort(addr)
		if !ok || ae == "" || len(ae) > 16 || err != nil || host == "" {
			return nil, fmt.Errorf("%q: write AE=host:port, e.g. CT_ROOM1=192.168.10.21:104", item)
		}
		out[ae] = host + ":" + port
	}
	return out, nil
}

func splitHostPort(s string) (string, string, error) {
	i := strings.LastIndex(s, ":")
	if i < 0 {
		return "", "", errors.New("no port")
	}
	if _, err := strconv.Atoi(s[i+1:]); err != nil {
		return "", "", err
	}
	return s[:i], s[i+1:], nil
}
