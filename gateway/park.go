package gateway

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Parking. renkei refuses an instance either for a reason that heals by itself (0xA7xx out of resources, 5xx, 429, a
// network error: the uploader retries those after a short backoff and never parks them) or for one that does not:
// the data are wrong or conflict with what renkei holds. Sent again and again, such an instance kept the backlog's
// "oldest" growing and renkei's backlog alert firing, with nothing an IT person could do. So after a refusal that
// will not heal (refusalKind), or after MaxRefusals refusals of any kind, the instance is parked: it stays on disk, is
// no longer sent, and no longer counts in the queue (Summary, the heartbeat's backlog); it is reported on its own.
// `renkei gateway retry` queues it again (after renkei's admin removed the cause), `renkei gateway discard` deletes a
// study's parked instances. Nothing is deleted without a person asking.
//
// The parked state lives in the sidecar, written atomically (Update). A sidecar lost to a crash is rebuilt from the
// file without it: the instance is queued again, refused again and parked again, which is safe. A modality sending
// the very same bytes again (the same key) queues the instance again too: Put removes its sidecar, and
// a discard under way leaves that copy alone (removeParked).

// Reasons an instance is parked (Entry.ParkedKind); the status page words them in Japanese and English.
const (
	ParkedConflict   = "conflict"   // 0x0111, 409: renkei holds this SOP Instance UID with other content
	ParkedInvalid    = "invalid"    // 0xA9xx: a required attribute is missing or wrong, or the study is another patient's
	ParkedUnreadable = "unreadable" // 0xCxxx: renkei cannot read the file
	ParkedRequest    = "request"    // 400, 413, 415, 422 for a request of this instance alone
	ParkedRepeated   = "repeated"   // refused MaxRefusals times for a reason that might have healed
)

// refusalKind says whether an instance-level failure reason (PS3.4 Annex B.2.3, PS3.18 Table 10.5.3-2) from renkei
// will not heal by itself, and as which kind. 0x0110 (processing failure: renkei could not finish, e.g. the upload
// was cut), 0x0124 (not authorised) and anything unknown may: they park only after MaxRefusals. 0xA7xx never comes
// here: it is retried as renkei being busy.
func refusalKind(code int) (kind string, permanent bool) {
	switch {
	case code == 0x0111:
		return ParkedConflict, true
	case code&0xFF00 == 0xA900:
		return ParkedInvalid, true
	case code&0xF000 == 0xC000:
		return ParkedUnreadable, true
	}
	return ParkedRepeated, false
}

// requestRefusalPermanent says whether renkei's request-level answer (a 4xx other than 401/403/408/429, which are
// handled before) refuses the content, so that sending the same bytes again cannot help: 400 bad request, 409
// conflict, 413 too large, 415 unsupported media type, 422 unprocessable. 404, 405 and other answers point at the
// line or a proxy rather than the instance; they count towards MaxRefusals.
func requestRefusalPermanent(status int) bool {
	switch status {
	case http.StatusBadRequest, http.StatusConflict, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType, http.StatusUnprocessableEntity:
		return true
	}
	return false
}

// ParkedWords words a parked kind for a person: Japanese, English.
func ParkedWords(kind string) (ja, en string) {
	switch kind {
	case ParkedConflict:
		return "renkei に同じ UID で内容の異なる画像がすでにあります", "renkei already holds an image with this UID and other content"
	case ParkedInvalid:
		return "画像のデータが renkei の受け付ける形になっていません(UIDの欠落・不正、別の患者の検査など)", "the image's data are not what renkei accepts (a missing or wrong UID, another patient's study, …)"
	case ParkedUnreadable:
		return "renkei が画像ファイルを読めません", "renkei cannot read the image file"
	case ParkedRequest:
		return "renkei がこの画像の送信を拒否しました", "renkei refused the request carrying this image"
	case ParkedRepeated:
		return "renkei に何度も拒否されました", "renkei refused it repeatedly"
	}
	return "renkei に拒否されました", "renkei refused it"
}

// ParkedStudy is one study's parked instances, as the status and `renkei gateway parked` show them.
type ParkedStudy struct {
	StudyInstanceUID string    `json:"studyInstanceUID"`
	Instances        int       `json:"instances"`
	Bytes            int64     `json:"bytes"`
	CallingAE        string    `json:"callingAE,omitempty"`
	Since            time.Time `json:"since"`  // when the first of them was parked
	Latest           time.Time `json:"latest"` // when the last one was
	Kind             string    `json:"kind"`   // why the last one was parked (Parked… constants)
	Reason           string    `json:"reason"` // renkei's answer for it, in English
}

// ParkedJSON is the parked part of a status: every parked instance counted, studies most recently parked first.
type ParkedJSON struct {
	Instances int           `json:"instances"`
	Studies   []ParkedStudy `json:"studies,omitempty"`
}

// parkedStudies groups parked entries by study.
func parkedStudies(parked []Entry) ParkedJSON {
	out := ParkedJSON{Instances: len(parked)}
	by := map[string]*ParkedStudy{}
	for _, e := range parked {
		ps := by[e.StudyInstanceUID]
		if ps == nil {
			ps = &ParkedStudy{StudyInstanceUID: e.StudyInstanceUID, Since: e.Parked}
			by[e.StudyInstanceUID] = ps
		}
		ps.Instances++
		ps.Bytes += e.Size
		if e.Parked.Before(ps.Since) {
			ps.Since = e.Parked
		}
		if !e.Parked.Before(ps.Latest) {
			ps.Latest, ps.Kind, ps.Reason, ps.CallingAE = e.Parked, e.ParkedKind, e.LastError, e.CallingAETitle
		}
	}
	for _, ps := range by {
		out.Studies = append(out.Studies, *ps)
	}
	sort.Slice(out.Studies, func(i, j int) bool { return out.Studies[i].Latest.After(out.Studies[j].Latest) })
	return out
}

// Parked returns the parked instances, oldest received first, of one study or ("") of all.
func (s *Spool) Parked(study string) ([]Entry, error) {
	all, err := s.List()
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, e := range all {
		if !e.Parked.IsZero() && (study == "" || e.StudyInstanceUID == study) {
			out = append(out, e)
		}
	}
	return out, nil
}

// Unpark puts the parked instances of one study (or, with "", of all) back in the queue, to be sent at once with a
// fresh count of refusals, and returns them. Each sidecar is rewritten atomically and the change is flushed before
// Unpark returns: a crash before leaves each instance either parked or queued, and after it none comes back parked
// that the operator was told is queued again.
func (s *Spool) Unpark(study string) ([]Entry, error) {
	parked, err := s.Parked(study)
	if err != nil {
		return nil, err
	}
	var done []Entry
	for _, e := range parked {
		e.Parked, e.ParkedKind, e.Refusals, e.NextAttempt = time.Time{}, "", 0, time.Time{}
		if err := s.update(e, true); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return done, fmt.Errorf("spool: queue %s again: %w", e.Key, err)
		}
		done = append(done, e)
	}
	if len(done) > 0 {
		if err := s.syncObjects(); err != nil {
			return done, err
		}
	}
	return done, nil
}

// Discard deletes the parked instances of one study, and only those (what of the study still waits in the queue
// stays), durably, and returns what it deleted.
func (s *Spool) Discard(study string) ([]Entry, error) {
	if study == "" {
		return nil, errors.New("spool: discard needs a Study Instance UID")
	}
	parked, err := s.Parked(study)
	if err != nil {
		return nil, err
	}
	var done []Entry
	for _, e := range parked {
		gone, err := s.removeParked(e.Key)
		if err != nil {
			return done, fmt.Errorf("spool: delete %s: %w", e.Key, err)
		}
		if gone {
			done = append(done, e)
		}
	}
	if len(done) > 0 {
		if err := s.syncObjects(); err != nil {
			return done, err
		}
	}
	return done, nil
}

// removeParked deletes an instance if it is still parked, and reports whether it did. The list Discard works from
// was read before: meanwhile a modality may have sent the same bytes again (the same key), and Put, under the same
// lock, queued them afresh and told the modality they are stored; that copy is not the operator's to delete.
func (s *Spool) removeParked(key string) (bool, error) {
	s.kmu.Lock()
	defer s.kmu.Unlock()
	var e Entry
	var known bool
	s.imu.Lock()
	if s.index != nil {
		e, known = s.index[key]
	}
	indexed := s.index != nil
	s.imu.Unlock()
	if !indexed {
		// No index: no gateway runs (the caller holds the spool's lock), and the sidecar is the state.
		b, err := os.ReadFile(s.jpath(key))
		known = err == nil && json.Unmarshal(b, &e) == nil
	}
	if !known || e.Parked.IsZero() {
		return false, nil
	}
	return true, s.removeLocked(key)
}

// Operator actions while the gateway runs. The running gateway keeps the spool's entries in memory (Spool.index) and
// is the only process that may change the spool: a `renkei gateway discard` deleting files behind its back could
// delete a copy a modality had just sent again and been told was stored, and a `retry` rewriting sidecars would not
// be seen by its index. So the gateway holds an exclusive lock (flock(2) on DIR/lock) while it runs, and a command:
//   - gets the lock: no gateway runs; it changes the spool itself, holding the lock so that none starts meanwhile;
//   - does not: it leaves a request in DIR/requests/ and waits for the gateway's answer beside it. The gateway looks
//     there every second and acts through its own Spool (the same locks as the modalities' stores).
//
// The status page's HTTP port was the other way in; it has no authentication and is often opened to the hospital's
// network for IT staff to look at, so a request that deletes images does not go there: the spool folder's file
// permissions (the gateway's user) decide who may act.

// lockSpool takes the spool's lock, waiting up to wait for whoever holds it (a command changes the spool for a
// moment). It returns the function that releases it; ok is false when the lock stayed held.
func lockSpool(dir string, wait time.Duration) (unlock func(), ok bool, err error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("spool lock: %w", err)
	}
	// A command run with sudo may be the first to make the file: the gateway, running as the spool's owner, must
	// still open it, or it could not start.
	if err := chownLike(dir, f.Name()); err != nil {
		f.Close()
		return nil, false, fmt.Errorf("spool lock: %w", err)
	}
	deadline := time.Now().Add(wait)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, true, nil // closing the file releases the lock
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, false, fmt.Errorf("spool lock: %w", err)
		}
		if !time.Now().Before(deadline) {
			f.Close()
			return nil, false, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Action is an operator's request on parked instances: "retry" (Study, or every study with All) or "discard" (Study).
type Action struct {
	Action string `json:"action"`
	Study  string `json:"study,omitempty"`
	All    bool   `json:"all,omitempty"`
	By     string `json:"by,omitempty"` // the user who ran the command, for the log
}

// ActionResult is what an Action did: the instances queued again or deleted.
type ActionResult struct {
	Entries []Entry `json:"entries"`
	Error   string  `json:"error,omitempty"`
	// Gateway is true when the running gateway carried the action out (false: the command did, none running).
	Gateway bool `json:"gateway"`
}

// entryJSON carries an entry with its key (which Entry's sidecar form leaves out) in an ActionResult.
type entryJSON struct {
	Key string `json:"key"`
	Entry
}

// MarshalJSON writes the entries with their keys (the names of their files in the spool).
func (r ActionResult) MarshalJSON() ([]byte, error) {
	es := make([]entryJSON, len(r.Entries))
	for i, e := range r.Entries {
		es[i] = entryJSON{e.Key, e}
	}
	return json.Marshal(struct {
		Entries []entryJSON `json:"entries"`
		Error   string      `json:"error,omitempty"`
		Gateway bool        `json:"gateway"`
	}{es, r.Error, r.Gateway})
}

// UnmarshalJSON reads what MarshalJSON wrote.
func (r *ActionResult) UnmarshalJSON(b []byte) error {
	var v struct {
		Entries []entryJSON `json:"entries"`
		Error   string      `json:"error"`
		Gateway bool        `json:"gateway"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	r.Entries, r.Error, r.Gateway = nil, v.Error, v.Gateway
	for _, e := range v.Entries {
		e.Entry.Key = e.Key
		r.Entries = append(r.Entries, e.Entry)
	}
	return nil
}

func (a Action) check() error {
	switch {
	case a.Action != "retry" && a.Action != "discard":
		return fmt.Errorf("unknown action %q", a.Action)
	case a.Action == "discard" && (a.Study == "" || a.All):
		return errors.New("discard deletes one study's parked images: name it with --study UID")
	case a.Action == "retry" && (a.Study == "") == !a.All:
		return errors.New("retry needs --study UID or --all")
	}
	return nil
}

// apply carries an action out on the spool and records it in the spool's audit log.
func (s *Spool) apply(a Action, log *slog.Logger) ActionResult {
	log = orDiscard(log)
	var res ActionResult
	var err error
	if err = a.check(); err == nil {
		if a.Action == "retry" {
			res.Entries, err = s.Unpark(a.Study)
		} else {
			// What is about to be deleted is in the audit log first: a crash during the deletion leaves a trace
			// of who deleted what, and the line after it says what was deleted.
			if parked, perr := s.Parked(a.Study); perr == nil && len(parked) > 0 {
				sops := make([]string, len(parked))
				for i, e := range parked {
					sops[i] = e.SOPInstanceUID
				}
				auditLine(filepath.Join(s.Dir, "audit.log"), log, map[string]any{"action": "discard-begin", "study": a.Study, "by": a.By,
					"instances": len(parked), "sopInstances": sops})
			}
			res.Entries, err = s.Discard(a.Study)
		}
	}
	if err != nil {
		res.Error = err.Error()
	}
	study := a.Study
	if a.All {
		study = "(all)"
	}
	var bytes int64
	for _, e := range res.Entries {
		bytes += e.Size
	}
	if a.Action == "retry" {
		log.Info("gateway: parked images queued again by the operator", "study", study, "instances", len(res.Entries), "by", a.By, "err", err)
	} else {
		log.Warn("gateway: parked images deleted by the operator", "study", study, "instances", len(res.Entries), "bytes", bytes, "by", a.By, "err", err)
	}
	sops := make([]string, len(res.Entries))
	for i, e := range res.Entries {
		sops[i] = e.SOPInstanceUID
	}
	auditLine(filepath.Join(s.Dir, "audit.log"), log, map[string]any{"action": a.Action, "study": study, "by": a.By,
		"instances": len(res.Entries), "bytes": bytes, "sopInstances": sops, "error": res.Error})
	return res
}

// auditLine appends one JSON line to the gateway's audit log (the file the fetcher writes too), fsynced.
func auditLine(path string, log *slog.Logger, fields map[string]any) {
	fields["time"] = time.Now().Format(time.RFC3339)
	line, _ := json.Marshal(fields)
	fl, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err == nil {
		_, err = fl.Write(append(line, '\n'))
		if err == nil {
			err = fl.Sync()
		}
		if cerr := fl.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			// A command run with sudo may have made the file: the gateway must still append to it.
			err = chownLike(filepath.Dir(path), path)
		}
	}
	if err != nil {
		orDiscard(log).Error("gateway: cannot write its audit log", "err", err)
	}
}

func requestsDir(dir string) string { return filepath.Join(dir, "requests") }

// Act carries out an operator's action on the spool in dir: itself when no gateway runs, else through the running
// gateway (a request it answers within wait). It fails when the gateway did not answer in time; the request then
// stays, and the gateway acts on it when it can.
func Act(dir string, a Action, wait time.Duration, log *slog.Logger) (ActionResult, error) {
	if err := a.check(); err != nil {
		return ActionResult{}, err
	}
	if _, err := os.Stat(filepath.Join(dir, "objects")); err != nil {
		return ActionResult{}, fmt.Errorf("%s is not a gateway spool: %w", dir, err)
	}
	unlock, ok, err := lockSpool(dir, 0)
	if err != nil {
		return ActionResult{}, err
	}
	if ok {
		defer unlock()
		res := (&Spool{Dir: dir}).apply(a, log)
		if res.Error != "" {
			return res, errors.New(res.Error)
		}
		return res, nil
	}
	if err := os.MkdirAll(requestsDir(dir), 0o700); err != nil {
		return ActionResult{}, err
	}
	// The gateway runs as its own user, the command often with sudo: what root makes here (the folder, the
	// request) is given to the spool's owner, else the gateway could not read it, nor any later command write
	// beside it.
	if err := chownLike(dir, requestsDir(dir)); err != nil {
		return ActionResult{}, err
	}
	var rb [6]byte
	rand.Read(rb[:])
	id := fmt.Sprintf("%d-%s", time.Now().UnixNano(), hex.EncodeToString(rb[:]))
	b, _ := json.Marshal(a)
	tmp := filepath.Join(requestsDir(dir), id+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return ActionResult{}, err
	}
	if err := chownLike(dir, tmp); err != nil {
		os.Remove(tmp)
		return ActionResult{}, err
	}
	if err := os.Rename(tmp, filepath.Join(requestsDir(dir), id+".json")); err != nil {
		return ActionResult{}, err
	}
	req, answer := filepath.Join(requestsDir(dir), id+".json"), filepath.Join(requestsDir(dir), id+".done")
	deadline, taken := time.Now().Add(wait), false
	for {
		b, err := os.ReadFile(answer)
		if err == nil {
			os.Remove(answer)
			var res ActionResult
			if err := json.Unmarshal(b, &res); err != nil {
				return res, fmt.Errorf("the gateway's answer %s: %w", answer, err)
			}
			if res.Error != "" {
				return res, errors.New(res.Error)
			}
			return res, nil
		}
		if time.Now().After(deadline) {
			if taken {
				return ActionResult{}, fmt.Errorf("the running gateway took the request but has not answered within %v: see its log", 2*wait)
			}
			// Whoever removes the request owns it: if it is still there, the gateway never will act on it.
			if os.Remove(req) == nil {
				return ActionResult{}, fmt.Errorf("a gateway runs with this spool (it holds %s) but did not take the request within %v: nothing was done", filepath.Join(dir, "lock"), wait)
			}
			taken, deadline = true, time.Now().Add(wait)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// chownLike gives path the owner of the spool folder dir, when this process runs as root and they differ.
func chownLike(dir, path string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	di, err := os.Stat(dir)
	if err != nil {
		return err
	}
	pi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	d, okd := di.Sys().(*syscall.Stat_t)
	p, okp := pi.Sys().(*syscall.Stat_t)
	if !okd || !okp || (d.Uid == p.Uid && d.Gid == p.Gid) {
		return nil
	}
	if err := os.Lchown(path, int(d.Uid), int(d.Gid)); err != nil {
		return fmt.Errorf("give %s to the spool's owner: %w", path, err)
	}
	return nil
}

// serveRequests carries out the operator's requests left in DIR/requests/, oldest first, and answers each beside it.
// It reports whether an instance was queued again. Answers no command collected within an hour are removed.
func (s *Spool) serveRequests(log *slog.Logger) (queued bool) {
	des, err := os.ReadDir(requestsDir(s.Dir))
	if err != nil {
		return false
	}
	for _, d := range des { // ReadDir sorts by name: the time the request was made
		name := d.Name()
		p := filepath.Join(requestsDir(s.Dir), name)
		id, ok := strings.CutSuffix(name, ".json")
		if !ok {
			if info, err := d.Info(); err == nil && time.Since(info.ModTime()) > time.Hour {
				os.Remove(p)
			}
			continue
		}
		// A request older than a command waits was left by one that could not remove it (killed): its operator
		// never heard an answer, so it is dropped, not carried out long after.
		if info, err := d.Info(); err == nil && time.Since(info.ModTime()) > 10*time.Minute {
			orDiscard(log).Warn("gateway: an old operator's request is dropped, not carried out", "request", name)
			os.Remove(p)
			continue
		}
		var a Action
		b, err := os.ReadFile(p)
		if err == nil {
			err = json.Unmarshal(b, &a)
		}
		// The request goes before it is carried out: at most once, even across a crash. A command that gave up
		// waiting removed it first, and nothing is done.
		if rerr := os.Remove(p); rerr != nil {
			continue
		}
		var res ActionResult
		if err != nil {
			res.Error = "the request cannot be read: " + err.Error()
		} else {
			res = s.apply(a, log)
		}
		res.Gateway = true
		if a.Action == "retry" && len(res.Entries) > 0 {
			queued = true
		}
		out, _ := json.Marshal(res)
		tmp := filepath.Join(requestsDir(s.Dir), id+".done.tmp")
		if err := os.WriteFile(tmp, out, 0o600); err == nil {
			os.Rename(tmp, filepath.Join(requestsDir(s.Dir), id+".done"))
		}
	}
	return queued
}
