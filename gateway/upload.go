package gateway

import (
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"

	"renkei/dicom"
)

// ErrTokenRefused is returned by Uploader.Run when renkei refuses the gateway's token (401): the gateway stops.
var ErrTokenRefused = errors.New("the gateway's token was refused: revoked or expired; get a new one from renkei's admin")

// ErrTokenReadOnly is returned by Uploader.Run when renkei answers 403: the token may not store.
var ErrTokenReadOnly = errors.New("renkei refused to store with the gateway's token (403): it must be a read-write token (renkei admin token add NAME --institution ID --write)")

// Uploader sends the spool to renkei with STOW-RS (PS3.18 10.5), study by study in batches, Parallel requests at
// once, and removes exactly the instances renkei acknowledged. Set the fields, then call Run.
type Uploader struct {
	Spool *Spool
	// Server is renkei's base URL (https://…); the uploader posts to Server + "/dicomweb/studies".
	Server string
	Token  string
	Client *http.Client
	// Parallel is the number of requests in flight (default 4). MaxBatch and MaxBatchBytes bound one request
	// (default 20 instances, 16 MiB; a larger instance goes alone).
	Parallel      int
	MaxBatch      int
	MaxBatchBytes int64
	// Encoding is the Content-Encoding of request bodies: "zstd", "gzip" or "" (none). renkei stores the decoded
	// bytes, that is the modality's bytes.
	Encoding string
	// Contact, when set, is told after each request whether renkei answered (nil) or could not be reached.
	Contact func(err error)
	// Ledger, when set, records each instance renkei acknowledged before it leaves the spool (for storage commitment).
	Ledger *Ledger
	// Sent, when set, is called with each instance renkei acknowledged, after it left the spool.
	Sent func(Entry)
	// Refused, when set, is called after renkei refused instances (they stay in the spool).
	Refused func()
	// MinBackoff and MaxBackoff bound the wait after a network error or a 5xx (defaults 1 s and 60 s). A refused
	// instance waits longer, up to RefusedBackoff (default 1 h), since a retry rarely helps it.
	MinBackoff, MaxBackoff, RefusedBackoff time.Duration
	// MaxRefusals is how many refusals park an instance whose refusal might have healed (default 5); a refusal that
	// will not heal parks it at once (park.go).
	MaxRefusals int
	// Poll is how often the spool is looked at when nothing woke the uploader (default 5 s).
	Poll   time.Duration
	Logger *slog.Logger
	Now    func() time.Time

	once   sync.Once
	wake   chan struct{}
	resume chan struct{}
	// zstds and gzips keep encoders between requests: a new zstd encoder allocates and clears its 8 MiB window
	// (most of a small request's CPU), a gzip one ~1 MiB.
	zstds, gzips sync.Pool
}

func (u *Uploader) init() {
	u.once.Do(func() { u.wake, u.resume = make(chan struct{}, 1), make(chan struct{}, 1) })
}

// Resume tells the uploader renkei answers again (a heartbeat got through): it ends the backoff and sends at once.
func (u *Uploader) Resume() {
	u.init()
	select {
	case u.resume <- struct{}{}:
	default:
	}
}

// Wake tells the uploader the spool has something new.
func (u *Uploader) Wake() {
	u.init()
	select {
	case u.wake <- struct{}{}:
	default:
	}
}

func (u *Uploader) now() time.Time {
	if u.Now == nil {
		return time.Now()
	}
	return u.Now()
}

func (u *Uploader) logger() *slog.Logger {
	return orDiscard(u.Logger)
}

func orDur(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// outcome is what one request did.
type outcome struct {
	retryable bool  // network error, 5xx, or another answer worth retrying after the backoff
	fatal     error // ErrTokenRefused, ErrTokenReadOnly
	sent      int   // instances acknowledged
}

// Run sends until ctx ends (returns nil) or renkei refuses the token (returns ErrTokenRefused or ErrTokenReadOnly).
func (u *Uploader) Run(ctx context.Context) error {
	u.init()
	parallel := max(1, u.Parallel)
	if u.Parallel == 0 {
		parallel = 4
	}
	minB, maxB := orDur(u.MinBackoff, time.Second), orDur(u.MaxBackoff, time.Minute)
	poll := orDur(u.Poll, 5*time.Second)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var mu sync.Mutex
	inflight := map[string]bool{}
	// ended holds the keys whose request ended while the spool was being listed: the list may hold them as they were
	// before renkei's answer (not yet parked, removed or given a later attempt), so they wait for the next list.
	listing, ended := false, map[string]bool{}
	var pauseUntil time.Time
	backoff := time.Duration(0)
	var fatal error
	done := make(chan struct{}, parallel)
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	defer wg.Wait()

	for {
		if ctx.Err() != nil {
			return nil
		}
		select {
		case <-u.resume:
			mu.Lock()
			pauseUntil, backoff = time.Time{}, 0
			mu.Unlock()
		default:
		}
		mu.Lock()
		if fatal != nil {
			mu.Unlock()
			cancel()
			wg.Wait()
			return fatal
		}
		paused := u.now().Before(pauseUntil)
		wait := time.Until(pauseUntil)
		mu.Unlock()
		var batches [][]Entry
		if !paused {
			mu.Lock()
			listing = true
			mu.Unlock()
			all, err := u.Spool.List()
			if err != nil {
				u.logger().Error("gateway: cannot list the spool", "err", err)
			}
			var ready []Entry
			next := time.Time{}
			mu.Lock()
			listing = false
			for _, e := range all {
				if inflight[e.Key] || ended[e.Key] || !e.Parked.IsZero() {
					continue
				}
				if e.NextAttempt.After(u.now()) {
					if next.IsZero() || e.NextAttempt.Before(next) {
						next = e.NextAttempt
					}
					continue
				}
				ready = append(ready, e)
			}
			clear(ended) // their requests signalled done: the next list, at once, sees what they left
			mu.Unlock()
			batches = u.batches(ready)
			wait = poll
			if !next.IsZero() {
				wait = min(wait, time.Until(next))
			}
			// A batch short of full whose newest instance arrived just now waits a moment for the rest of its
			// study: a modality sends an instance every few milliseconds, and a request of one instance costs
			// renkei and the spool as much as one of twenty.
			kept := batches[:0]
			for _, b := range batches {
				newest := b[0].Received
				var size int64
				for _, e := range b {
					size += e.Size
					if e.Received.After(newest) {
						newest = e.Received
					}
				}
				if len(b) < u.maxBatch() && size < u.maxBatchBytes()/2 && u.now().Sub(newest) < 200*time.Millisecond {
					wait = min(wait, newest.Add(200*time.Millisecond).Sub(u.now()))
					continue
				}
				kept = append(kept, b)
			}
			batches = kept
		}
		for _, b := range batches {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return nil
			case <-done:
				// A request ended: its instances may be removed; a fresh list is taken below.
				sem <- struct{}{}
			}
			mu.Lock()
			stop := fatal != nil || u.now().Before(pauseUntil)
			if !stop {
				for _, e := range b {
					inflight[e.Key] = true
				}
			}
			mu.Unlock()
			if stop {
				<-sem
				break
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				out := u.send(ctx, b)
				mu.Lock()
				for _, e := range b {
					delete(inflight, e.Key)
					if listing {
						ended[e.Key] = true
					}
				}
				switch {
				case out.fatal != nil:
					fatal = out.fatal
				case out.retryable && ctx.Err() == nil:
					backoff = min(max(2*backoff, minB), maxB)
					pauseUntil = u.now().Add(backoff)
				case out.sent > 0:
					backoff = 0
				}
				mu.Unlock()
				<-sem
				select {
				case done <- struct{}{}:
				default:
				}
			}()
		}
		if len(batches) > 0 {
			wait = 0 // look again at once: more may be ready, and the parallel slots fill as requests end
			select {
			case <-done:
			case <-u.wake:
			case <-ctx.Done():
				return nil
			}
			continue
		}
		timer := time.NewTimer(max(wait, 10*time.Millisecond))
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-u.resume:
			mu.Lock()
			pauseUntil, backoff = time.Time{}, 0
			mu.Unlock()
		case <-u.wake:
		case <-done:
		case <-timer.C:
		}
		timer.Stop()
	}
}

func (u *Uploader) maxBatch() int {
	if u.MaxBatch <= 0 {
		return 20
	}
	return u.MaxBatch
}

func (u *Uploader) maxBatchBytes() int64 {
	if u.MaxBatchBytes <= 0 {
		return 16 << 20
	}
	return u.MaxBatchBytes
}

// batches groups entries by study, oldest study first, into requests of at most MaxBatch instances and MaxBatchBytes.
// A request never holds two entries with the same SOP Instance UID (a modality's corrected resend spools a second
// file under the same UID): renkei's answer names instances by UID only, so one stored and one refused in the same
// answer could not be told apart, and the refused file would leave the spool as if stored. An instance renkei refused
// before goes alone, so that a refusal of the whole request can be pinned on it, and the rest of its study is not held
// back by it.
func (u *Uploader) batches(entries []Entry) [][]Entry {
	maxN, maxBytes := u.maxBatch(), u.maxBatchBytes()
	byStudy := map[string][]Entry{}
	var order []string
	for _, e := range entries {
		if _, ok := byStudy[e.StudyInstanceUID]; !ok {
			order = append(order, e.StudyInstanceUID)
		}
		byStudy[e.StudyInstanceUID] = append(byStudy[e.StudyInstanceUID], e)
	}
	var out [][]Entry
	for _, st := range order {
		var cur []Entry
		var size int64
		uids := map[string]bool{}
		for _, e := range byStudy[st] {
			if e.Refusals > 0 {
				out = append(out, []Entry{e})
				continue
			}
			if len(cur) > 0 && (len(cur) >= maxN || size+e.Size > maxBytes || uids[e.SOPInstanceUID]) {
				out = append(out, cur)
				cur, size = nil, 0
				clear(uids)
			}
			cur = append(cur, e)
			size += e.Size
			uids[e.SOPInstanceUID] = true
		}
		if len(cur) > 0 {
			out = append(out, cur)
		}
	}
	return out
}

// stowAnswer is a STOW-RS response (PS3.18 10.5.3, DICOM JSON): the uploader reads only its two sequences.
type stowAnswer map[string]json.RawMessage

func (a stowAnswer) items(t dicom.Tag) []map[string]string {
	var seq struct {
		Value []map[string]struct {
			Value []any `json:"Value"`
		} `json:"Value"`
	}
	if raw, ok := a[t.Hex()]; !ok || json.Unmarshal(raw, &seq) != nil {
		return nil
	}
	var out []map[string]string
	for _, it := range seq.Value {
		m := map[string]string{}
		for k, v := range it {
			if len(v.Value) > 0 {
				m[k] = fmt.Sprint(v.Value[0])
			}
		}
		out = append(out, m)
	}
	return out
}

// send posts one batch and applies renkei's answer to the spool.
func (u *Uploader) send(ctx context.Context, batch []Entry) outcome {
	log := u.logger().With("study", batch[0].StudyInstanceUID, "instances", len(batch))
	// An entry whose file is gone (removed by hand from objects/) cannot be sent: left in, it would fail every request
	// of its study as if renkei could not be reached. It leaves the spool's index, loudly.
	kept := batch[:0:0]
	for _, e := range batch {
		if _, err := os.Stat(u.Spool.path(e.Key)); errors.Is(err, os.ErrNotExist) {
			log.Error("gateway: a spooled file is gone; its entry is dropped", "sop_instance", e.SOPInstanceUID, "key", e.Key)
			if err := u.Spool.Remove(e.Key); err != nil {
				log.Error("gateway: cannot drop the entry of a missing file", "key", e.Key, "err", err)
			}
			continue
		}
		kept = append(kept, e)
	}
	if batch = kept; len(batch) == 0 {
		return outcome{}
	}
	log.Debug("gateway: sending")
	resp, err := u.post(ctx, batch)
	if ctx.Err() != nil {
		if resp != nil {
			resp.Body.Close()
		}
		return outcome{}
	}
	if u.Contact != nil {
		u.Contact(err)
	}
	if err != nil {
		log.Warn("gateway: renkei cannot be reached; will retry", "err", err)
		u.note(batch, "renkei could not be reached: "+err.Error(), time.Time{})
		return outcome{retryable: true}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return outcome{fatal: ErrTokenRefused}
	case resp.StatusCode == http.StatusForbidden:
		return outcome{fatal: ErrTokenReadOnly}
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout:
		log.Warn("gateway: renkei answered an error; will retry", "status", resp.Status)
		u.note(batch, "renkei answered "+resp.Status+": "+problemDetail(body), time.Time{})
		return outcome{retryable: true}
	case resp.StatusCode/100 != 2 && resp.StatusCode != http.StatusConflict:
		log.Warn("gateway: renkei refused the request", "status", resp.Status, "detail", problemDetail(body))
		u.refuse(batch, "renkei refused the request ("+resp.Status+"): "+problemDetail(body), ParkedRequest, requestRefusalPermanent(resp.StatusCode))
		return outcome{}
	}
	var ans stowAnswer
	err = json.Unmarshal(body, &ans)
	_, failedSeq := ans[dicom.FailedSOPSequence.Hex()]
	_, storedSeq := ans[dicom.ReferencedSOPSequence.Hex()]
	if resp.StatusCode == http.StatusConflict && (err != nil || !failedSeq && !storedSeq) {
		// A 409 that is not a STOW-RS answer (a proxy's, say, or a problem+json body) still refuses the request as
		// it is.
		log.Warn("gateway: renkei refused the request", "status", resp.Status, "detail", problemDetail(body))
		u.refuse(batch, "renkei refused the request ("+resp.Status+"): "+problemDetail(body), ParkedRequest, true)
		return outcome{}
	}
	if err != nil {
		u.note(batch, "renkei's answer cannot be read: "+err.Error(), time.Time{})
		return outcome{retryable: true}
	}
	stored := map[string]bool{}
	for _, it := range ans.items(dicom.ReferencedSOPSequence) {
		stored[it[dicom.ReferencedSOPInstanceUID.Hex()]] = true
	}
	failed := map[string]string{}
	codes := map[string]int{}
	for _, it := range ans.items(dicom.FailedSOPSequence) {
		reason := it[dicom.FailureReason.Hex()]
		code, err := strconv.Atoi(reason)
		if err == nil {
			reason = fmt.Sprintf("0x%04X", code)
		} else {
			code = -1
		}
		if c := it["00000902"]; c != "" {
			reason += ": " + c
		}
		failed[it[dicom.ReferencedSOPInstanceUID.Hex()]] = reason
		codes[it[dicom.ReferencedSOPInstanceUID.Hex()]] = code
	}
	out := outcome{}
	var acked []Entry
	for _, e := range batch {
		if stored[e.SOPInstanceUID] {
			acked = append(acked, e)
		}
	}
	// The ledger first: a storage commitment asked after the instances left the spool still finds them. If it cannot
	// be written, the instances stay in the spool and are sent again (renkei takes the same bytes twice as one).
	if u.Ledger != nil {
		if err := u.Ledger.Record(acked); err != nil {
			log.Error("gateway: cannot record sent instances; they stay in the spool", "err", err)
			acked = nil
			out.retryable = true
		}
	}
	keys := make([]string, len(acked))
	for i, e := range acked {
		keys[i] = e.Key
	}
	if err := u.Spool.RemoveAll(keys); err != nil {
		log.Error("gateway: cannot remove sent instances from the spool", "err", err)
	}
	for _, e := range acked {
		out.sent++
		if u.Sent != nil {
			u.Sent(e)
		}
	}
	for _, e := range batch {
		switch {
		case stored[e.SOPInstanceUID]:
		case failed[e.SOPInstanceUID] != "":
			reason, code := failed[e.SOPInstanceUID], codes[e.SOPInstanceUID]
			log.Warn("gateway: renkei refused an instance", "sop_instance", e.SOPInstanceUID, "reason", reason)
			if code >= 0 && code&0xFF00 == 0xA700 {
				u.note([]Entry{e}, "renkei is out of resources ("+reason+")", time.Time{})
				out.retryable = true
			} else {
				kind, permanent := refusalKind(code)
				u.refuse([]Entry{e}, "renkei refused it: "+reason, kind, permanent)
			}
		default:
			u.note([]Entry{e}, "renkei's answer did not mention it", time.Time{})
			out.retryable = true
		}
	}
	if out.sent > 0 {
		log.Info("gateway: sent", "acknowledged", out.sent)
	}
	return out
}

// note records an attempt and its error in each entry's sidecar.
func (u *Uploader) note(batch []Entry, msg string, next time.Time) {
	for _, e := range batch {
		e.Attempts++
		e.LastError = msg
		e.LastAttempt = u.now()
		e.NextAttempt = next
		u.Spool.Update(e)
	}
}

// refuse records a refusal. The instance stays in the spool: it is tried again after a growing wait, or parked when
// the refusal will not heal (permanent) or it was refused MaxRefusals times (park.go). A refusal of a request of
// several instances is not pinned on any of them: each is sent alone next time (batches) and parked on its own answer.
func (u *Uploader) refuse(batch []Entry, msg, kind string, permanent bool) {
	maxWait := orDur(u.RefusedBackoff, time.Hour)
	maxRefusals := u.MaxRefusals
	if maxRefusals <= 0 {
		maxRefusals = 5
	}
	if len(batch) > 1 {
		permanent = false
	}
	var parked []Entry
	for _, e := range batch {
		e.Refusals++
		wait := min(orDur(u.MinBackoff, time.Second)<<min(e.Attempts, 20), maxWait)
		if permanent || e.Refusals >= maxRefusals && len(batch) == 1 {
			e.Parked, e.ParkedKind = u.now(), kind
			if !permanent {
				e.ParkedKind = ParkedRepeated
			}
			parked = append(parked, e)
		}
		u.note([]Entry{e}, msg, u.now().Add(wait))
	}
	if len(parked) > 0 {
		_, en := ParkedWords(parked[0].ParkedKind)
		sops := make([]string, len(parked))
		for i, e := range parked {
			sops[i] = e.SOPInstanceUID
			u.logger().Warn("gateway: an instance renkei refused is parked: no longer sent, kept on disk (renkei gateway parked, retry, discard)",
				"study", e.StudyInstanceUID, "sop_instance", e.SOPInstanceUID, "refusals", e.Refusals, "why", en, "reason", msg)
		}
		auditLine(filepath.Join(u.Spool.Dir, "audit.log"), u.Logger, map[string]any{"action": "park", "study": parked[0].StudyInstanceUID,
			"instances": len(parked), "kind": parked[0].ParkedKind, "reason": msg, "sopInstances": sops})
	}
	if u.Refused != nil {
		u.Refused()
	}
}

func problemDetail(b []byte) string {
	var p struct{ Detail, Title string }
	if json.Unmarshal(b, &p) == nil && (p.Detail != "" || p.Title != "") {
		if p.Detail != "" {
			return p.Detail
		}
		return p.Title
	}
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// post streams the batch as multipart/related; type="application/dicom", compressed as Encoding says.
func (u *Uploader) post(ctx context.Context, batch []Entry) (*http.Response, error) {
	var rb [16]byte
	rand.Read(rb[:])
	boundary := "renkei-gateway-" + hex.EncodeToString(rb[:])
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(u.writeBody(pw, batch, boundary))
	}()
	req, err := http.NewRequestWithContext(ctx, "POST", strings.TrimSuffix(u.Server, "/")+"/dicomweb/studies", pr)
	if err != nil {
		pr.Close()
		return nil, err
	}
	req.Header.Set("Content-Type", `multipart/related; type="application/dicom"; boundary=`+boundary)
	req.Header.Set("Accept", "application/dicom+json")
	req.Header.Set("Authorization", "Bearer "+u.Token)
	if u.Encoding != "" {
		req.Header.Set("Content-Encoding", u.Encoding)
	}
	c := u.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		pr.CloseWithError(err)
		return nil, err
	}
	return resp, nil
}

func (u *Uploader) writeBody(w io.Writer, batch []Entry, boundary string) error {
	var zw io.WriteCloser
	switch u.Encoding {
	case "gzip":
		gz, _ := u.gzips.Get().(*gzip.Writer)
		if gz == nil {
			gz, _ = gzip.NewWriterLevel(w, gzip.BestSpeed)
		} else {
			gz.Reset(w)
		}
		defer u.gzips.Put(gz)
		zw = gz
	case "zstd":
		enc, _ := u.zstds.Get().(*zstd.Encoder)
		if enc == nil {
			var err error
			if enc, err = zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(8<<20)); err != nil {
				return err
			}
		} else {
			enc.Reset(w)
		}
		defer u.zstds.Put(enc)
		zw = enc
	}
	if zw != nil {
		w = zw
	}
	mw := multipart.NewWriter(w)
	if err := mw.SetBoundary(boundary); err != nil {
		return err
	}
	for _, e := range batch {
		part, err := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/dicom"}})
		if err != nil {
			return err
		}
		f, err := u.Spool.OpenFile(e.Key)
		if err != nil {
			return err
		}
		_, err = io.Copy(part, f)
		f.Close()
		if err != nil {
			return err
		}
	}
	if err := mw.Close(); err != nil {
		return err
	}
	if zw != nil {
		return zw.Close()
	}
	return nil
}

// Queue summarises the spool for `renkei gateway status`. Parked instances are not in the queue: they are counted
// apart.
type Queue struct {
	Instances, Studies int
	Bytes              int64
	Oldest             time.Time // zero when empty
	// Failures are the queued entries whose last attempt failed, most recent first.
	Failures []Entry
	// Parked are the instances renkei refused for good, by study.
	Parked ParkedJSON
}

// Summary reads the spool's queue.
func (s *Spool) Summary() (Queue, error) {
	all, err := s.List()
	if err != nil {
		return Queue{}, err
	}
	q := Queue{}
	studies := map[string]bool{}
	var parked []Entry
	for _, e := range all {
		if !e.Parked.IsZero() {
			parked = append(parked, e)
			continue
		}
		q.Instances++
		studies[e.StudyInstanceUID] = true
		q.Bytes += e.Size
		if q.Oldest.IsZero() || e.Received.Before(q.Oldest) {
			q.Oldest = e.Received
		}
		if e.LastError != "" {
			q.Failures = append(q.Failures, e)
		}
	}
	q.Studies = len(studies)
	q.Parked = parkedStudies(parked)
	sort.Slice(q.Failures, func(i, j int) bool { return q.Failures[i].LastAttempt.After(q.Failures[j].LastAttempt) })
	return q, nil
}
