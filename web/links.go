package web

// Share links for people outside renkei (issue 7): routes are registered here, so that server.go stays small.
//
// A member of staff who may share makes a link to one of their institution's patients (all studies, or chosen
// ones) for 1–30 days. The answer carries, once, the URL (with a QR code) and a 6-digit PIN to give by another
// channel (spoken, on paper); renkei keeps only the SHA-256 of the URL's 256-bit token and an argon2id hash of the
// PIN. The recipient opens /link/{token} on any phone, enters the PIN, and gets a 30-minute view (an HttpOnly
// cookie scoped to the link's API path) of the study list and rendered images. Nothing is written but the audit
// trail: every PIN attempt, the study list and the first image of each series are recorded, naming the link, and
// the record commits before the data goes out (fail closed). Ten wrong PINs in a row, from any number of addresses,
// lock the link for good; its institution hears of it (audit event, live event, e-mail). A link the institution
// revoked answers exactly like one that never existed.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/jpeg"
	"image/png"
	"math/big"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/boombuler/barcode/qr"

	"renkei"
	"renkei/dicom"
	"renkei/identity"
	"renkei/notify"
	"renkei/render"
)

// linkPublic lists the share-link routes that answer without a login (the PIN page and what it unlocks). Each
// checks the link's token itself, and all but the page and the PIN step the view's cookie.
var linkPublic = []string{
	"GET /link/{token}",
	"GET /api/link/{token}",
	"POST /api/link/{token}/unlock",
	"GET /api/link/{token}/studies",
	"GET /api/link/{token}/image",
}

const (
	// linkPINLimit wrong PINs in a row lock a link: with a 6-digit PIN a guesser's chance is 1 in 100,000.
	linkPINLimit = 10
	// linkPINDigits is the PIN's length: easy to read out on the phone, and with the limit above, enough.
	linkPINDigits = 6
	// linkViewPeriod is how long a right PIN opens the link for, before it is asked again.
	linkViewPeriod = 30 * time.Minute
	linkMaxDays    = 30
	linkDays       = 7
	linkTokenBytes = 32 // 256 random bits (at least 128 asked)
	linkCookie     = "renkei_link"
	linkPurpose    = "share-link"
)

// linkStore is what share links need of the index (implemented by sqlstore.DB; see its methods for the contracts).
// It is found on Server.Store, which every deployment sets to the index.
type linkStore interface {
	CreateShareLink(ctx context.Context, l *renkei.ShareLink, audit *renkei.AuditEvent) error
	ShareLinkByToken(ctx context.Context, tokenHash string) (renkei.ShareLink, error)
	ShareLinks(ctx context.Context, institution, id int64) ([]renkei.ShareLink, error)
	RevokeShareLink(ctx context.Context, id, institution int64, audit *renkei.AuditEvent) error
	BeginPINAttempt(ctx context.Context, id int64, limit int) (int, error)
	PINWrong(ctx context.Context, id int64, limit int, audit, lockEvent *renkei.AuditEvent) (bool, error)
	PINRight(ctx context.Context, id int64, viewHash, source string, expires time.Time, audit *renkei.AuditEvent) error
	ShareLinkView(ctx context.Context, id int64, viewHash string, now time.Time) (bool, error)
	ShareLinkViewed(ctx context.Context, id int64, events ...*renkei.AuditEvent) error
}

// links holds the share links' handlers and their bit of state.
type links struct {
	s *Server
	// attempts limits PIN attempts per client address (on top of the per-link lock), gently: a person who
	// mistypes is not held up, a script trying many links is.
	attempts *limiter
	// pinChecks bounds the argon2id checks running at once (64 MiB each).
	pinChecks chan struct{}

	mu   sync.Mutex
	seen map[string]time.Time // (view, series) whose first image was recorded, and when
}

// registerLinks adds the share-link routes.
func (s *Server) registerLinks() {
	l := &links{s: s, attempts: newLimiter(10, time.Minute), pinChecks: make(chan struct{}, 4), seen: map[string]time.Time{}}
	s.handle("POST /api/links", l.create)
	s.handle("GET /api/links", l.list)
	s.handle("POST /api/links/{id}/revoke", l.revoke)
	s.handle("GET /link/{token}", l.page)
	s.handle("GET /api/link/{token}", l.state)
	s.handle("POST /api/link/{token}/unlock", l.unlock)
	s.handle("GET /api/link/{token}/studies", l.studies)
	s.handle("GET /api/link/{token}/image", l.image)
}

func (l *links) store() (linkStore, error) {
	st, ok := l.s.Store.(linkStore)
	if !ok || l.s.DICOMweb == nil || l.s.DICOMweb.Archive == nil {
		return nil, renkei.Errorj("web.links", renkei.Unavailable, "このサーバーでは共有リンクを使えません。", "share links are not available on this server")
	}
	return st, nil
}

// ---- staff ----

type linkJSON struct {
	ID         int64      `json:"id"`
	Issuer     string     `json:"issuer"`
	PatientID  string     `json:"patientId"`
	AllStudies bool       `json:"allStudies"`
	Studies    []string   `json:"studies"`
	Note       string     `json:"note,omitempty"`
	CreatedBy  string     `json:"createdBy"`
	CreatedAt  time.Time  `json:"createdAt"`
	ExpiresAt  time.Time  `json:"expiresAt"`
	RevokedAt  *time.Time `json:"revokedAt,omitempty"`
	LockedAt   *time.Time `json:"lockedAt,omitempty"`
	FailedPINs int        `json:"failedPins"`
	LastViewAt *time.Time `json:"lastViewAt,omitempty"`
	State      string     `json:"state"` // active, expired, revoked or locked
}

func (l *links) linkJSON(k renkei.ShareLink) linkJSON {
	studies := k.Studies
	if studies == nil {
		studies = []string{}
	}
	return linkJSON{ID: k.ID, Issuer: k.Patient.Issuer, PatientID: k.Patient.ID, AllStudies: k.AllStudies, Studies: studies, Note: k.Note,
		CreatedBy: k.CreatedByName, CreatedAt: k.CreatedAt, ExpiresAt: k.ExpiresAt, RevokedAt: k.RevokedAt, LockedAt: k.LockedAt,
		FailedPINs: k.FailedPINs, LastViewAt: k.LastViewAt, State: k.State(l.s.Now())}
}

// create makes a link to one of the caller's institution's patients and answers, once, its URL, QR code and PIN.
func (l *links) create(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Issuer    string   `json:"issuer"`
		PatientID string   `json:"patientId"`
		Studies   []string `json:"studies"`
		Days      int      `json:"days"`
		Note      string   `json:"note"`
	}
	if err := readJSON(r, &req); err != nil {
		l.s.problem(w, r, err)
		return
	}
	const op = "web.createLink"
	p := renkei.PrincipalFrom(r.Context())
	if !mayShare(p) {
		l.s.problem(w, r, forbidden(op, "データを共有できるのは、患者の診療やケアの調整に携わる職員だけです。",
			"only staff who treat patients or coordinate their care may share data"))
		return
	}
	st, err := l.store()
	if err != nil {
		l.s.problem(w, r, err)
		return
	}
	if strings.TrimSpace(req.PatientID) == "" {
		l.s.problem(w, r, renkei.Errorj(op, renkei.Invalid, "患者を指定してください(患者ID。貴施設で複数の発行者を使っている場合は発行者も)。",
			"name the patient (patientId, and issuer if your institution uses several)"))
		return
	}
	if req.Days == 0 {
		req.Days = linkDays
	}
	if req.Days < 1 || req.Days > linkMaxDays {
		l.s.problem(w, r, renkei.Errorj(op, renkei.Invalid, "共有リンクの期間は1日から%d日までです。", "a share link lasts from 1 to %d days", linkMaxDays))
		return
	}
	if len([]rune(req.Note)) > 500 || len(req.Studies) > 100 {
		l.s.problem(w, r, renkei.Errorj(op, renkei.Invalid, "共有リンクに含められる検査は100件まで、メモは500文字までです。",
			"a link names at most 100 studies and a note of at most 500 characters"))
		return
	}
	for _, uid := range req.Studies {
		if !dicom.ValidUID(uid) {
			l.s.problem(w, r, renkei.Errorj(op, renkei.Invalid, "%q は検査の UID(StudyInstanceUID)ではありません。", "%q is not a StudyInstanceUID", uid))
			return
		}
	}
	key := renkei.PatientKey{Issuer: req.Issuer, ID: req.PatientID}
	if key.Issuer == "" {
		key.Issuer = p.Issuer
	}
	name := p.Name
	if me := authFrom(r.Context()); me != nil {
		if key.Issuer == "" {
			key.Issuer = me.User.Institution.Issuer
		}
		if me.User.Name != "" {
			name = me.User.Name
		}
	}
	token, pin := randomText(linkTokenBytes), randomPIN()
	k := renkei.ShareLink{Institution: p.Institution, Patient: key, Studies: req.Studies, Note: strings.TrimSpace(req.Note), CreatedBy: p.ID,
		CreatedByName: name, ExpiresAt: l.s.Now().Add(time.Duration(req.Days) * 24 * time.Hour), TokenHash: hashText(token),
		PINHash: identity.HashPassword(pin)}
	e := renkei.EventFor(p, renkei.ActionShare, renkei.OutcomeSuccess)
	e.DataInstitution, e.Patient, e.Purpose = p.Institution, key, linkPurpose
	e.Detail = "made for someone outside renkei, until " + k.ExpiresAt.Format(time.RFC3339)
	if len(k.Studies) > 0 {
		e.Detail += "; studies " + strings.Join(k.Studies, " ")
	}
	if k.Note != "" {
		e.Detail += "; note: " + k.Note
	}
	if err := st.CreateShareLink(r.Context(), &k, &e); err != nil {
		l.s.problem(w, r, err)
		return
	}
	u := l.url(r, token)
	writeJSON(w, http.StatusCreated, struct {
		linkJSON
		URL string `json:"url"`
		QR  string `json:"qr"`
		PIN string `json:"pin"`
	}{l.linkJSON(k), u, qrPNG(u), pin})
}

// url is the link's address as its recipient opens it.
func (l *links) url(r *http.Request, token string) string {
	base := strings.TrimRight(l.s.PublicURL, "/")
	if base == "" {
		scheme := "http"
		if r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https" {
			scheme = "https"
		}
		base = scheme + "://" + r.Host
	}
	return base + "/link/" + token
}

// list shows the caller's institution's links (?patientId=&issuer= for one patient's), without their secrets.
func (l *links) list(w http.ResponseWriter, r *http.Request) {
	p := renkei.PrincipalFrom(r.Context())
	if !mayShare(p) {
		l.s.problem(w, r, forbidden("web.links", "施設の共有リンクを見られるのは、共有の権限を持つ職員だけです。", "only staff who may share see their institution's share links"))
		return
	}
	st, err := l.store()
	if err != nil {
		l.s.problem(w, r, err)
		return
	}
	list, err := st.ShareLinks(r.Context(), p.Institution, 0)
	if err != nil {
		l.s.problem(w, r, err)
		return
	}
	q := r.URL.Query()
	out := []linkJSON{}
	for _, k := range list {
		if id := q.Get("patientId"); id != "" && (k.Patient.ID != id || (q.Get("issuer") != "" && k.Patient.Issuer != q.Get("issuer"))) {
			continue
		}
		out = append(out, l.linkJSON(k))
	}
	writeJSON(w, http.StatusOK, out)
}

// revoke ends one of the caller's institution's links at once; another institution's is not found.
func (l *links) revoke(w http.ResponseWriter, r *http.Request) {
	const op = "web.revokeLink"
	p := renkei.PrincipalFrom(r.Context())
	if !mayShare(p) {
		l.s.problem(w, r, forbidden(op, "共有リンクを取り消せるのは、共有の権限を持つ職員だけです。", "only staff who may share may revoke a share link"))
		return
	}
	st, err := l.store()
	if err != nil {
		l.s.problem(w, r, err)
		return
	}
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	var list []renkei.ShareLink
	if err == nil {
		list, err = st.ShareLinks(r.Context(), p.Institution, id)
	}
	if err == nil && len(list) == 0 {
		err = renkei.Errorj(op, renkei.NotFound, "共有リンク %q は見つかりません。", "there is no share link %q", r.PathValue("id"))
	}
	if err != nil {
		if renkei.ErrorKind(err) == renkei.Internal {
			err = renkei.Errorj(op, renkei.NotFound, "共有リンク %q は見つかりません。", "there is no share link %q", r.PathValue("id"))
		}
		l.s.problem(w, r, err)
		return
	}
	k := list[0]
	e := renkei.EventFor(p, renkei.ActionRevoke, renkei.OutcomeSuccess)
	e.DataInstitution, e.Patient, e.Purpose, e.Detail = p.Institution, k.Patient, linkPurpose, fmt.Sprintf("revoked share link %d", k.ID)
	if err := st.RevokeShareLink(r.Context(), k.ID, p.Institution, &e); err != nil {
		l.s.problem(w, r, err)
		return
	}
	if k.RevokedAt == nil {
		now := l.s.Now()
		k.RevokedAt = &now
	}
	writeJSON(w, http.StatusOK, l.linkJSON(k))
}

// ---- the recipient's side (public) ----

// page is the link's page: the same for every token, known or not (it asks the API), under the app's CSP.
func (l *links) page(w http.ResponseWriter, r *http.Request) {
	b, err := uiFiles.ReadFile("ui/link.html")
	if err != nil {
		l.s.problem(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", l.s.csp())
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer") // the token is in the URL
	h.Set("X-Robots-Tag", "noindex, nofollow")
	w.Write(b)
}

// linkRefusal answers a public request with a problem document that also says the link's state, for the page to
// show in the reader's language: "unknown" (also a revoked link), "expired", "locked", "pin" (the PIN is needed,
// or was wrong) or "busy".
func linkRefusal(w http.ResponseWriter, status int, state, detail string, extra ...any) {
	doc := map[string]any{"type": "about:blank", "title": http.StatusText(status), "status": status, "detail": detail, "state": state}
	for i := 0; i+1 < len(extra); i += 2 {
		doc[extra[i].(string)] = extra[i+1]
	}
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(doc)
}

const (
	msgUnknown = "this link does not exist or was withdrawn by the institution that shared it"
	msgExpired = "this link has expired; ask the institution that shared it for a new one"
	msgLocked  = "this link is locked after too many wrong PINs; ask the institution that shared it for a new one"
)

// resolve finds the link named by the request's token, or answers why it cannot be used.
func (l *links) resolve(w http.ResponseWriter, r *http.Request) (renkei.ShareLink, linkStore, bool) {
	st, err := l.store()
	if err != nil {
		l.s.problem(w, r, err)
		return renkei.ShareLink{}, nil, false
	}
	token := r.PathValue("token")
	if len(token) != base64.RawURLEncoding.EncodedLen(linkTokenBytes) {
		linkRefusal(w, http.StatusNotFound, "unknown", msgUnknown)
		return renkei.ShareLink{}, nil, false
	}
	k, err := st.ShareLinkByToken(r.Context(), hashText(token))
	if renkei.ErrorKind(err) == renkei.NotFound {
		linkRefusal(w, http.StatusNotFound, "unknown", msgUnknown)
		return k, nil, false
	}
	if err != nil {
		l.s.problem(w, r, err)
		return k, nil, false
	}
	switch k.State(l.s.Now()) {
	case "revoked":
		linkRefusal(w, http.StatusNotFound, "unknown", msgUnknown)
	case "expired":
		linkRefusal(w, http.StatusGone, "expired", msgExpired)
	case "locked":
		linkRefusal(w, http.StatusLocked, "locked", msgLocked)
	default:
		return k, st, true
	}
	return k, nil, false
}

// viewer is resolve plus the view opened by the PIN (the cookie), which it checks is still open.
func (l *links) viewer(w http.ResponseWriter, r *http.Request) (renkei.ShareLink, linkStore, string, bool) {
	k, st, ok := l.resolve(w, r)
	if !ok {
		return k, nil, "", false
	}
	c, err := r.Cookie(linkCookie)
	if err != nil || c.Value == "" || len(c.Value) > 100 {
		linkRefusal(w, http.StatusUnauthorized, "pin", "enter the PIN you were given with this link")
		return k, nil, "", false
	}
	view := hashText(c.Value)
	open, err := st.ShareLinkView(r.Context(), k.ID, view, l.s.Now())
	if err != nil {
		l.s.problem(w, r, err)
		return k, nil, "", false
	}
	if !open {
		linkRefusal(w, http.StatusUnauthorized, "pin", "the view has ended; enter the PIN again")
		return k, nil, "", false
	}
	return k, st, view, true
}

// state tells the page what to show: the PIN form, or (a view still open) the studies.
func (l *links) state(w http.ResponseWriter, r *http.Request) {
	k, st, ok := l.resolve(w, r)
	if !ok {
		return
	}
	state := "pin"
	if c, err := r.Cookie(linkCookie); err == nil && len(c.Value) <= 100 {
		if open, err := st.ShareLinkView(r.Context(), k.ID, hashText(c.Value), l.s.Now()); err == nil && open {
			state = "open"
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"state": state, "pinDigits": linkPINDigits})
}

// event is an audit event of a view through link k, from the request's address.
func (l *links) event(r *http.Request, k renkei.ShareLink, action renkei.AuditAction, outcome string) renkei.AuditEvent {
	return renkei.AuditEvent{Actor: fmt.Sprintf("share link %d", k.ID), ActorKind: renkei.ShareLinkPrincipal, ActorID: k.ID, Institution: k.Institution,
		Action: action, Outcome: outcome, Purpose: linkPurpose, Source: l.s.clientAddr(r), DataInstitution: k.Institution, Patient: k.Patient}
}

// unlock checks a PIN. Right: a view opens for linkViewPeriod (a cookie for this link's API only). Wrong: 401 with
// the attempts left; the attempt that reaches linkPINLimit locks the link and tells its institution.
func (l *links) unlock(w http.ResponseWriter, r *http.Request) {
	var req struct {
		PIN string `json:"pin"`
	}
	if err := readJSON(r, &req); err != nil {
		l.s.problem(w, r, err)
		return
	}
	addr := l.s.clientAddr(r)
	if !l.attempts.allow(addr, l.s.Now()) {
		w.Header().Set("Retry-After", "60")
		linkRefusal(w, http.StatusTooManyRequests, "busy", "too many attempts from this address; wait a minute and try again")
		return
	}
	k, st, ok := l.resolve(w, r)
	if !ok {
		return
	}
	pin := strings.TrimSpace(req.PIN)
	if len(pin) < 4 || len(pin) > 12 || strings.Trim(pin, "0123456789") != "" {
		// Not counted: no such PIN can be right, and a slip of the finger should not bring the lock closer.
		linkRefusal(w, http.StatusBadRequest, "pin", fmt.Sprintf("the PIN is %d digits", linkPINDigits))
		return
	}
	ctx := r.Context()
	n, err := st.BeginPINAttempt(ctx, k.ID, linkPINLimit)
	if renkei.ErrorKind(err) == renkei.Forbidden {
		linkRefusal(w, http.StatusLocked, "locked", msgLocked)
		return
	}
	if err != nil {
		l.s.problem(w, r, err)
		return
	}
	right, err := l.checkPIN(ctx, k.PINHash, pin)
	if err != nil {
		l.s.problem(w, r, err) // the attempt stays counted: a client that gives up mid-check gains nothing
		return
	}
	if !right {
		e := l.event(r, k, renkei.ActionLogin, renkei.OutcomeFailure)
		e.Detail = fmt.Sprintf("share link %d: wrong PIN (%d in a row, of %d allowed)", k.ID, n, linkPINLimit)
		lock := renkei.EventFor(renkei.System, renkei.ActionRevoke, renkei.OutcomeSuccess)
		lock.DataInstitution, lock.Patient, lock.Purpose = k.Institution, k.Patient, linkPurpose
		lock.Detail = fmt.Sprintf("share link %d locked after %d wrong PINs in a row (the last from %s); made by %s", k.ID, linkPINLimit, addr,
			k.CreatedByName)
		locked, err := st.PINWrong(ctx, k.ID, linkPINLimit, &e, &lock)
		if err != nil {
			l.s.problem(w, r, err)
			return
		}
		if locked {
			l.s.Logger.Warn("share link locked after wrong PINs", "link", k.ID, "institution", k.Institution, "last", addr)
			l.notifyLocked(k)
			linkRefusal(w, http.StatusLocked, "locked", msgLocked)
			return
		}
		left := max(0, linkPINLimit-n)
		linkRefusal(w, http.StatusUnauthorized, "pin", fmt.Sprintf("the PIN is wrong; %d attempts left before the link locks", left), "attemptsLeft", left)
		return
	}
	value := randomText(32)
	expires := l.s.Now().Add(linkViewPeriod)
	if k.ExpiresAt.Before(expires) {
		expires = k.ExpiresAt
	}
	e := l.event(r, k, renkei.ActionLogin, renkei.OutcomeSuccess)
	e.Detail = fmt.Sprintf("share link %d opened with its PIN until %s", k.ID, expires.Format(time.RFC3339))
	if err := st.PINRight(ctx, k.ID, hashText(value), addr, expires, &e); err != nil {
		if renkei.ErrorKind(err) == renkei.Forbidden { // locked, revoked or expired while the PIN was checked
			linkRefusal(w, http.StatusLocked, "locked", msgLocked)
			return
		}
		l.s.problem(w, r, err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: linkCookie, Value: value, Path: "/api/link/" + r.PathValue("token"), MaxAge: int(expires.Sub(l.s.Now()).Seconds()),
		HttpOnly: true, Secure: secureCookie(r), SameSite: http.SameSiteStrictMode})
	writeJSON(w, http.StatusOK, map[string]any{"state": "open", "until": expires})
}

// checkPIN compares a PIN with its argon2id hash, a few at a time.
func (l *links) checkPIN(ctx context.Context, hash, pin string) (bool, error) {
	select {
	case l.pinChecks <- struct{}{}:
	case <-ctx.Done():
		return false, renkei.Errorj("web.unlock", renkei.Unavailable, "PIN を確認できませんでした。もう一度お試しください。", "the PIN could not be checked; try again")
	}
	defer func() { <-l.pinChecks }()
	return identity.CheckPassword(hash, pin), nil
}

// notifyLocked tells the link's institution that it locked: the admins' audit trail has the event already; here
// its open apps (a live "link" event) and its 地域連携室's mailbox (no patient data, as every e-mail of renkei).
func (l *links) notifyLocked(k renkei.ShareLink) {
	if l.s.Hub != nil {
		l.s.Hub.PublishEvent(k.Institution, 0, "link", strconv.FormatInt(k.ID, 10))
	}
	if l.s.Mailer == nil {
		return
	}
	in, err := l.s.Store.InstitutionByPK(context.Background(), k.Institution)
	if err != nil || in.Email == "" {
		return
	}
	where := strings.TrimRight(l.s.PublicURL, "/") + "/#/links"
	made := k.CreatedAt.Format("2006-01-02 15:04")
	body := fmt.Sprintf("%s 御中\n\nrenkei の共有リンク No. %d(%s が %s に作成)で、暗証番号(PIN)の誤りが%d回続いたため、リンクをロックしました。\n"+
		"第三者が暗証番号を試した可能性があります。このリンクはもう使えません。必要なら新しいリンクを作り、暗証番号は別の手段でお伝えください。\n"+
		"ログインしてご確認ください:\n%s\n\nこのメールには患者の情報を含めていません。\n\n--\n"+
		"renkei: share link No. %d (made by %s on %s) was locked after %d wrong PINs in a row; someone may have tried to guess it. "+
		"It no longer opens. Log in to see it: %s\n",
		in.Name, k.ID, k.CreatedByName, made, linkPINLimit, where, k.ID, k.CreatedByName, made, linkPINLimit, where)
	l.s.Mailer.Send(notify.Message{To: []string{in.Email}, Subject: fmt.Sprintf("[renkei] 共有リンク No. %d をロックしました / share link locked", k.ID),
		Body: body})
}

// linkCtx reads the archive for a link: as the system (the link's own checks decide what is shown, by owner,
// patient and studies), and recorded by the handlers themselves, naming the link.
func linkCtx(r *http.Request) context.Context {
	return renkei.WithPrincipal(r.Context(), renkei.System)
}

// linkQuery is a query limited to the link's patient at its institution, and to its studies.
func linkQuery(k renkei.ShareLink, level renkei.QueryLevel, matches ...renkei.Match) *renkei.Query {
	q := &renkei.Query{Level: level, Owner: k.Institution, Patients: []int64{k.PatientPK}, Matches: matches, Limit: -1}
	if level == renkei.StudyLevel {
		q.Limit = 200
	}
	if !k.AllStudies {
		q.Matches = append(q.Matches, renkei.Match{Keyword: "StudyInstanceUID", Kind: renkei.MatchList, Values: k.Studies})
	}
	return q
}

type linkInstance struct {
	SOPInstanceUID string `json:"sopInstanceUID"`
	Number         *int   `json:"number,omitempty"`
	Frames         int    `json:"frames"`
}

type linkSeries struct {
	SeriesInstanceUID string         `json:"seriesInstanceUID"`
	Modality          string         `json:"modality"`
	Number            *int           `json:"number,omitempty"`
	Description       string         `json:"description,omitempty"`
	Instances         []linkInstance `json:"instances"`
}

type linkStudy struct {
	StudyInstanceUID string       `json:"studyInstanceUID"`
	StudyDate        string       `json:"studyDate"`
	Description      string       `json:"description,omitempty"`
	Modalities       []string     `json:"modalities"`
	Series           []linkSeries `json:"series"`
}

// studies lists the link's studies with their series and images, once the view of them is recorded.
func (l *links) studies(w http.ResponseWriter, r *http.Request) {
	k, st, _, ok := l.viewer(w, r)
	if !ok {
		return
	}
	out := []linkStudy{}
	var patient renkei.StudyRecord
	if k.AllStudies || len(k.Studies) > 0 {
		ctx := linkCtx(r)
		recs, err := l.s.DICOMweb.Archive.QueryStudies(ctx, linkQuery(k, renkei.StudyLevel))
		if err != nil {
			l.s.problem(w, r, err)
			return
		}
		for _, sr := range recs {
			patient = sr
			insts, err := l.s.DICOMweb.Archive.QueryInstances(ctx, linkQuery(k, renkei.InstanceLevel,
				renkei.Match{Keyword: "StudyInstanceUID", Kind: renkei.MatchSingle, Value: sr.StudyInstanceUID}))
			if err != nil {
				l.s.problem(w, r, err)
				return
			}
			ls := linkStudy{StudyInstanceUID: sr.StudyInstanceUID, StudyDate: sr.StudyDate, Description: sr.StudyDescription,
				Modalities: sr.ModalitiesInStudy, Series: []linkSeries{}}
			if ls.Modalities == nil {
				ls.Modalities = []string{}
			}
			idx := map[string]int{}
			for _, in := range insts {
				i, ok := idx[in.Series.SeriesInstanceUID]
				if !ok {
					i = len(ls.Series)
					idx[in.Series.SeriesInstanceUID] = i
					ls.Series = append(ls.Series, linkSeries{SeriesInstanceUID: in.Series.SeriesInstanceUID, Modality: in.Series.Modality,
						Number: in.Series.SeriesNumber, Description: in.Series.SeriesDescription})
				}
				ls.Series[i].Instances = append(ls.Series[i].Instances, linkInstance{in.SOPInstanceUID, in.InstanceNumber, max(1, in.NumberOfFrames)})
			}
			num := func(p *int) int {
				if p == nil {
					return 1 << 30
				}
				return *p
			}
			slices.SortStableFunc(ls.Series, func(a, b linkSeries) int { return num(a.Number) - num(b.Number) })
			for _, se := range ls.Series {
				slices.SortStableFunc(se.Instances, func(a, b linkInstance) int { return num(a.Number) - num(b.Number) })
			}
			out = append(out, ls)
		}
	}
	// Recorded, one event per study listed, before anything is answered; if the trail cannot be written, nothing is.
	var events []*renkei.AuditEvent
	for _, ls := range out {
		e := l.event(r, k, renkei.ActionQuery, renkei.OutcomeSuccess)
		e.Study, e.Detail = ls.StudyInstanceUID, fmt.Sprintf("share link %d: listed the study (%d series)", k.ID, len(ls.Series))
		events = append(events, &e)
	}
	if len(events) == 0 {
		e := l.event(r, k, renkei.ActionQuery, renkei.OutcomeSuccess)
		e.Detail = fmt.Sprintf("share link %d: listed no studies", k.ID)
		events = append(events, &e)
	}
	if err := st.ShareLinkViewed(r.Context(), k.ID, events...); err != nil {
		l.s.problem(w, r, err)
		return
	}
	in, _ := l.s.Store.InstitutionByPK(r.Context(), k.Institution)
	writeJSON(w, http.StatusOK, map[string]any{"institution": in.Name, "institutionEn": in.NameEn, "patientName": patient.PatientName,
		"patientBirthDate": patient.PatientBirthDate, "patientSex": patient.PatientSex, "expiresAt": k.ExpiresAt, "studies": out})
}

// image renders one frame of one of the link's instances as JPEG, fitted to size (default 1024) pixels. The first
// image of each series a view opens is recorded before it is sent.
func (l *links) image(w http.ResponseWriter, r *http.Request) {
	k, st, view, ok := l.viewer(w, r)
	if !ok {
		return
	}
	const op = "web.linkImage"
	q := r.URL.Query()
	study, series, instance := q.Get("study"), q.Get("series"), q.Get("instance")
	notFound := renkei.Errorj(op, renkei.NotFound, "この画像は、この共有リンクに含まれていません。", "this image is not part of the link")
	if !dicom.ValidUID(study) || !dicom.ValidUID(series) || !dicom.ValidUID(instance) || (!k.AllStudies && !slices.Contains(k.Studies, study)) {
		l.s.problem(w, r, notFound)
		return
	}
	frame, size := 1, 1024
	var err error
	if f := q.Get("frame"); f != "" {
		if frame, err = strconv.Atoi(f); err != nil || frame < 1 {
			l.s.problem(w, r, renkei.Errorj(op, renkei.Invalid, "フレーム番号は1以上の数にしてください。", "frame is a number from 1"))
			return
		}
	}
	if v := q.Get("size"); v != "" {
		if size, err = strconv.Atoi(v); err != nil || size < 32 || size > 2048 {
			l.s.problem(w, r, renkei.Errorj(op, renkei.Invalid, "大きさは32～2048ピクセルにしてください。", "size is from 32 to 2048 pixels"))
			return
		}
	}
	ctx := linkCtx(r)
	recs, err := l.s.DICOMweb.Archive.QueryInstances(ctx, linkQuery(k, renkei.InstanceLevel,
		renkei.Match{Keyword: "StudyInstanceUID", Kind: renkei.MatchSingle, Value: study},
		renkei.Match{Keyword: "SeriesInstanceUID", Kind: renkei.MatchSingle, Value: series},
		renkei.Match{Keyword: "SOPInstanceUID", Kind: renkei.MatchSingle, Value: instance}))
	if err == nil && len(recs) == 0 {
		err = notFound
	}
	if err != nil {
		l.s.problem(w, r, err)
		return
	}
	rec := recs[0]
	if frame > max(1, rec.NumberOfFrames) {
		l.s.problem(w, r, renkei.Errorj(op, renkei.NotFound, "この画像のフレーム数は%dです。", "the image has %d frames", max(1, rec.NumberOfFrames)))
		return
	}
	if l.firstOf(view, series) {
		e := l.event(r, k, renkei.ActionRead, renkei.OutcomeSuccess)
		e.Study, e.Detail = study, fmt.Sprintf("share link %d: opened series %s", k.ID, series)
		if err := st.ShareLinkViewed(r.Context(), k.ID, &e); err != nil {
			l.forget(view, series)
			l.s.problem(w, r, err)
			return
		}
	}
	o, err := l.s.DICOMweb.Archive.Open(ctx, rec, false, 1<<20)
	if err != nil {
		l.s.problem(w, r, err)
		return
	}
	defer o.Close()
	img, err := o.Rendered(frame, render.Options{Viewport: image.Pt(size, size)})
	if err != nil {
		l.s.problem(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "image/jpeg")
	w.Header().Set("Cache-Control", "private, no-store")
	jpeg.Encode(w, img, &jpeg.Options{Quality: 90})
}

// firstOf reports whether a view asks for a series for the first time (in this process; several nodes may each
// record it once).
func (l *links) firstOf(view, series string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.s.Now()
	if len(l.seen) > 10_000 {
		for key, at := range l.seen {
			if now.Sub(at) > linkViewPeriod {
				delete(l.seen, key)
			}
		}
	}
	key := view + " " + series
	if at, ok := l.seen[key]; ok && now.Sub(at) <= linkViewPeriod {
		return false
	}
	l.seen[key] = now
	return true
}

func (l *links) forget(view, series string) {
	l.mu.Lock()
	delete(l.seen, view+" "+series)
	l.mu.Unlock()
}

// ---- secrets and QR codes ----

// randomText returns n random bytes as unpadded base64url.
func randomText(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// randomPIN returns linkPINDigits uniformly random decimal digits.
func randomPIN() string {
	n, _ := rand.Int(rand.Reader, big.NewInt(1_000_000)) // crypto/rand does not fail (Go 1.24)
	return fmt.Sprintf("%0*d", linkPINDigits, n)
}

// hashText is how high-entropy secrets (the link's token, a view's cookie) are kept: their SHA-256.
func hashText(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// qrPNG draws text as a QR code (error correction M, with the quiet zone of four modules that phone cameras need)
// in a PNG data URL; "" if it cannot.
func qrPNG(text string) string {
	code, err := qr.Encode(text, qr.M, qr.Auto)
	if err != nil {
		return ""
	}
	n := code.Bounds().Dx()
	scale := max(1, 288/(n+8))
	img := image.NewGray(image.Rect(0, 0, (n+8)*scale, (n+8)*scale))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	for y := range n {
		for x := range n {
			if grayOf(code.At(x, y)) < 128 {
				draw.Draw(img, image.Rect((x+4)*scale, (y+4)*scale, (x+5)*scale, (y+5)*scale), image.Black, image.Point{}, draw.Src)
			}
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		return ""
	}
	return "data:image/png;base64," + base64.StdEncoding.EncodeToString(b.Bytes())
}

func grayOf(c color.Color) uint8 { return color.GrayModel.Convert(c).(color.Gray).Y }
