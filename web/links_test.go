package web_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"renkei"
	"renkei/notify"
)

// madeLink is what POST /api/links answers: the link's secrets, shown once.
type madeLink struct {
	ID         int64
	URL, QR    string
	PIN        string
	State      string
	AllStudies bool
	Studies    []string
	ExpiresAt  time.Time
}

func (l madeLink) token() string { return l.URL[strings.LastIndex(l.URL, "/")+1:] }

func makeLink(t *testing.T, c *client, req map[string]any) madeLink {
	t.Helper()
	if st := c.post("/api/links", req); st != 201 {
		t.Fatalf("POST /api/links %v: %d %s", req, st, c.body)
	}
	var l madeLink
	if err := json.Unmarshal(c.body, &l); err != nil {
		t.Fatal(err)
	}
	return l
}

// recipient is a phone outside renkei: no account, a cookie jar, and (behind the region's proxy) an address.
type recipient struct {
	t      *testing.T
	r      *region
	http   *http.Client
	link   madeLink
	status int
	body   []byte
	state  string // the problem document's state, when refused
}

func (r *region) recipient(t *testing.T, l madeLink) *recipient {
	jar, _ := cookiejar.New(nil)
	return &recipient{t: t, r: r, http: &http.Client{Jar: jar}, link: l}
}

// do calls the link's API (path after /api/link/{token}), from address from ("" for the test's own).
func (p *recipient) do(method, path, from string, body any) int {
	p.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, p.r.srv.URL+"/api/link/"+p.link.token()+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if from != "" {
		req.Header.Set("X-Forwarded-For", from)
	}
	resp, err := p.http.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	p.body, _ = io.ReadAll(resp.Body)
	p.status = resp.StatusCode
	var doc struct{ State string }
	json.Unmarshal(p.body, &doc)
	p.state = doc.State
	return p.status
}

func (p *recipient) unlock(pin, from string) int {
	return p.do("POST", "/unlock", from, map[string]string{"pin": pin})
}

func wrongPIN(pin string) string {
	if pin == "000000" {
		return "111111"
	}
	return "000000"
}

// TestShareLinkPIN: a clinic doctor makes a link for patient P1's CT. Without the PIN nothing is shown; nine wrong
// PINs from nine addresses do not lock it and the right one still opens it (and starts the count again); ten wrong
// PINs in a row, each from another address, lock it for good: the right PIN then answers "locked", the clinic's
// audit trail has the lock, its open app hears of it, and its 地域連携室 gets an e-mail without patient data.
func TestShareLinkPIN(t *testing.T) {
	r := newRegion(t)
	r.front.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	smtpAddr, inbox := smtpServer(t)
	r.clinic.Email = "renkei-shitsu@kita-clinic.example.jp"
	if err := r.db.PutInstitution(t.Context(), &r.clinic, nil); err != nil {
		t.Fatal(err)
	}
	r.front.Mailer = &notify.Mailer{Addr: smtpAddr, From: "renkei <renkei@region.example.jp>"}
	r.front.PublicURL = r.srv.URL
	heard := liveEvents(t, r, r.clinicWrite)

	clinic := r.as("kato@kita-clinic")
	l := makeLink(t, clinic, map[string]any{"patientId": "P1", "studies": []string{r.p1a.studyUID}, "note": "ご家族への説明用"})
	if !regexp.MustCompile(`^\d{6}$`).MatchString(l.PIN) {
		t.Errorf("the PIN %q is not 6 digits", l.PIN)
	}
	if tok, err := base64.RawURLEncoding.DecodeString(l.token()); err != nil || len(tok) < 16 {
		t.Errorf("the token %q carries %d random bytes (%v), want at least 16", l.token(), len(tok), err)
	}
	if !strings.HasPrefix(l.URL, r.srv.URL+"/link/") || !strings.HasPrefix(l.QR, "data:image/png;base64,") {
		t.Errorf("url %q, qr %.40q", l.URL, l.QR)
	}
	if png, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(l.QR, "data:image/png;base64,")); !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Error("the QR code is not a PNG")
	}
	// Only hashes are kept: the token's SHA-256, the PIN's argon2id.
	var tokenHash, pinHash string
	if err := r.rawDB().QueryRow(`SELECT token_hash, pin_hash FROM share_links WHERE pk = ?`, l.ID).Scan(&tokenHash, &pinHash); err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256([]byte(l.token())); tokenHash != hex.EncodeToString(sum[:]) || !strings.HasPrefix(pinHash, "$argon2id$") ||
		strings.Contains(pinHash, l.PIN) {
		t.Errorf("stored token_hash %s, pin_hash %s", tokenHash, pinHash)
	}

	phone := r.recipient(t, l)
	// The page is served to anyone, under the app's CSP, and tells nothing by itself.
	resp, err := http.Get(l.URL)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "script-src 'self'") ||
		!bytes.Contains(page, []byte(`src="/ui/link.js"`)) || bytes.Contains(page, []byte("<script>")) {
		t.Errorf("GET %s: %d %q", l.URL, resp.StatusCode, resp.Header.Get("Content-Security-Policy"))
	}
	if phone.do("GET", "", "", nil); phone.status != 200 || !strings.Contains(string(phone.body), `"pin"`) {
		t.Errorf("the link's state before the PIN: %d %s", phone.status, phone.body)
	}
	// Without the PIN: nothing.
	for _, path := range []string{"/studies", fmt.Sprintf("/image?study=%s&series=%s&instance=%s", r.p1a.studyUID, r.p1a.seriesUID, r.p1a.instanceUIDs[0])} {
		if st := phone.do("GET", path, "", nil); st != 401 || phone.state != "pin" || strings.Contains(string(phone.body), "Yamada") {
			t.Errorf("GET %s without the PIN: %d %s", path, st, phone.body)
		}
	}
	// Nine wrong PINs from nine addresses: refused, counted, not locked.
	bad := wrongPIN(l.PIN)
	for i := 1; i <= 9; i++ {
		if st := phone.unlock(bad, fmt.Sprintf("203.0.113.%d", i)); st != 401 || phone.state != "pin" ||
			!strings.Contains(string(phone.body), fmt.Sprintf(`"attemptsLeft":%d`, 10-i)) {
			t.Fatalf("wrong PIN %d: %d %s", i, st, phone.body)
		}
	}
	if st := phone.unlock(l.PIN, "198.51.100.7"); st != 200 {
		t.Fatalf("the right PIN after nine wrong ones: %d %s", st, phone.body)
	}
	if st := phone.do("GET", "/studies", "198.51.100.7", nil); st != 200 {
		t.Fatalf("studies after the PIN: %d %s", st, phone.body)
	}
	// Ten wrong PINs in a row, each from another address: the tenth locks the link.
	seq := r.lastSeq()
	for i := 1; i <= 10; i++ {
		want, state := 401, "pin"
		if i == 10 {
			want, state = 423, "locked"
		}
		other := r.recipient(t, l)
		if st := other.unlock(bad, fmt.Sprintf("192.0.2.%d", i)); st != want || other.state != state {
			t.Fatalf("wrong PIN %d of the second run: %d %s, want %d %s", i, st, other.body, want, state)
		}
	}
	for _, from := range []string{"198.51.100.7", "192.0.2.99"} {
		if st := phone.unlock(l.PIN, from); st != 423 || phone.state != "locked" {
			t.Errorf("the right PIN from %s on a locked link: %d %s", from, st, phone.body)
		}
	}
	if st := phone.do("GET", "/studies", "198.51.100.7", nil); st != 423 {
		t.Errorf("the view opened before the lock still lists studies: %d %s", st, phone.body)
	}
	// The clinic knows: the audit event (its administrator reads it), a live event, an e-mail.
	var lock, wrong int
	for _, e := range r.events(seq) {
		if e.DataInstitution != r.clinic.PK || e.Patient.ID != "P1" || !strings.Contains(e.Detail, fmt.Sprintf("share link %d", l.ID)) {
			t.Errorf("an event of the lock run is not about the link's data: %+v", e)
		}
		switch {
		case e.Action == renkei.ActionRevoke && strings.Contains(e.Detail, "locked after 10 wrong PINs") && strings.Contains(e.Detail, "192.0.2.10"):
			lock++
		case e.Action == renkei.ActionLogin && e.Outcome == renkei.OutcomeFailure && e.ActorKind == renkei.ShareLinkPrincipal:
			wrong++
		}
	}
	if lock != 1 || wrong != 10 {
		t.Errorf("audit: %d lock events and %d wrong PINs, want 1 and 10", lock, wrong)
	}
	admin := r.as("admin@kita-clinic")
	if st := admin.get("/api/audit?limit=50"); st != 200 || !strings.Contains(string(admin.body), fmt.Sprintf("share link %d locked", l.ID)) {
		t.Errorf("the clinic's administrator does not see the lock: %d", st)
	}
	if got := heard(5 * time.Second); got != fmt.Sprintf("link %d", l.ID) {
		t.Errorf("the clinic's open app heard %q, want the link's lock", got)
	}
	wctx, cancelWait := context.WithTimeout(context.Background(), 10*time.Second)
	r.front.Mailer.Wait(wctx)
	cancelWait()
	if msgs := mailbox(t, inbox); len(msgs) != 1 {
		t.Errorf("%d e-mails to the clinic, want 1", len(msgs))
	} else {
		m := msgs[0]
		if !strings.Contains(m.to, r.clinic.Email) || !strings.Contains(m.body, fmt.Sprintf("No. %d", l.ID)) || !strings.Contains(m.body, "ロック") {
			t.Errorf("the e-mail: to %q\n%s", m.to, m.body)
		}
		for _, secret := range []string{"P1", "Yamada", "山田", r.p1a.studyUID, l.token(), l.PIN, "ご家族"} {
			if strings.Contains(m.subject+m.body, secret) {
				t.Errorf("the e-mail carries %q:\n%s", secret, m.body)
			}
		}
	}
	var list []struct {
		ID         int64
		State      string
		FailedPins int
		LockedAt   *time.Time
	}
	clinic.getJSON("/api/links", &list)
	if len(list) != 1 || list[0].State != "locked" || list[0].FailedPins != 10 || list[0].LockedAt == nil {
		t.Errorf("the clinic's links: %+v", list)
	}
}

// TestShareLinkView: a fresh link opens with its PIN and shows its study and images, and only those; every view is
// in the audit trail under the link's id and the viewer's address; another institution cannot revoke it; it stops
// at its expiry, and a revoked link answers like one that never existed.
func TestShareLinkView(t *testing.T) {
	r := newRegion(t)
	r.front.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	clinic := r.as("kato@kita-clinic")
	hospital := r.as("tanaka@chuo-hospital")

	// Refusals when making one.
	for _, c := range []struct {
		name string
		who  *client
		req  map[string]any
		want int
	}{
		{"no consent (P2)", clinic, map[string]any{"patientId": "P2"}, 403},
		{"31 days", clinic, map[string]any{"patientId": "P1", "days": 31}, 400},
		{"a study of another patient", clinic, map[string]any{"patientId": "P1", "studies": []string{r.p2.studyUID}}, 404},
		{"another institution's patient", hospital, map[string]any{"patientId": "P1", "issuer": "KITA"}, 404},
		{"an API token", r.withToken(r.clinicWrite), map[string]any{"patientId": "P1"}, 403},
	} {
		if st := c.who.post("/api/links", c.req); st != c.want {
			t.Errorf("%s: %d %s, want %d", c.name, st, c.who.body, c.want)
		}
		if c.name == "no consent (P2)" && !strings.Contains(string(c.who.body), "consent") {
			t.Errorf("the refusal does not say consent is missing: %s", c.who.body)
		}
	}

	seq := r.lastSeq()
	l := makeLink(t, clinic, map[string]any{"patientId": "P1", "studies": []string{r.p1a.studyUID}, "days": 1})
	if l.AllStudies || len(l.Studies) != 1 || l.State != "active" {
		t.Errorf("the link: %+v", l)
	}
	phone := r.recipient(t, l)
	const from = "198.51.100.20"
	if st := phone.unlock(l.PIN, from); st != 200 {
		t.Fatalf("unlock: %d %s", st, phone.body)
	}
	if st := phone.do("GET", "", from, nil); st != 200 || !strings.Contains(string(phone.body), `"open"`) {
		t.Errorf("state after the PIN: %d %s", st, phone.body)
	}
	if st := phone.do("GET", "/studies", from, nil); st != 200 {
		t.Fatalf("studies: %d %s", st, phone.body)
	}
	var got struct {
		Institution string
		PatientName string
		Studies     []struct {
			StudyInstanceUID string
			Series           []struct {
				SeriesInstanceUID string
				Instances         []struct{ SOPInstanceUID string }
			}
		}
	}
	json.Unmarshal(phone.body, &got)
	if got.Institution != "北町クリニック" || len(got.Studies) != 1 || got.Studies[0].StudyInstanceUID != r.p1a.studyUID ||
		len(got.Studies[0].Series) != 1 || len(got.Studies[0].Series[0].Instances) != 2 {
		t.Fatalf("the link lists %s", phone.body)
	}
	img := func(st study, instance string) int {
		return phone.do("GET", fmt.Sprintf("/image?study=%s&series=%s&instance=%s&size=256", st.studyUID, st.seriesUID, instance), from, nil)
	}
	for i, uid := range r.p1a.instanceUIDs {
		if s := img(r.p1a, uid); s != 200 || !bytes.HasPrefix(phone.body, []byte{0xFF, 0xD8, 0xFF}) {
			t.Errorf("image %d: %d, %d bytes starting % x", i, s, len(phone.body), phone.body[:min(4, len(phone.body))])
		}
	}
	for name, get := range map[string]func() int{
		"the patient's other study": func() int { return img(r.p1b, r.p1b.instanceUIDs[0]) },
		"another patient's study":   func() int { return img(r.p2, r.p2.instanceUIDs[0]) },
		"another study's instance in this one": func() int {
			return img(study{studyUID: r.p1a.studyUID, seriesUID: r.p1a.seriesUID}, r.p1b.instanceUIDs[0])
		},
		"a frame past the last": func() int {
			return phone.do("GET", fmt.Sprintf("/image?study=%s&series=%s&instance=%s&frame=2", r.p1a.studyUID, r.p1a.seriesUID, r.p1a.instanceUIDs[0]), from, nil)
		},
	} {
		if s := get(); s != 404 {
			t.Errorf("%s: %d %s, want 404", name, s, phone.body)
		}
	}
	// Every view is in the trail, under the link's id, from the viewer's address, for the purpose "share-link".
	var actions []string
	for _, e := range r.events(seq) {
		if e.ActorKind != renkei.ShareLinkPrincipal {
			continue
		}
		if e.ActorID != l.ID || !strings.Contains(e.Detail, fmt.Sprintf("share link %d", l.ID)) || e.Source != from || e.Purpose != "share-link" ||
			e.DataInstitution != r.clinic.PK || e.Patient.ID != "P1" {
			t.Errorf("a view's event: %+v", e)
		}
		actions = append(actions, string(e.Action)+" "+e.Outcome)
	}
	if want := []string{"login success", "query success", "read success"}; fmt.Sprint(actions) != fmt.Sprint(want) {
		t.Errorf("the views recorded: %v, want %v", actions, want)
	}
	// Another institution can neither see nor revoke it.
	var theirs []any
	hospital.getJSON("/api/links", &theirs)
	if len(theirs) != 0 {
		t.Errorf("the hospital lists the clinic's links: %v", theirs)
	}
	if st := hospital.post(fmt.Sprintf("/api/links/%d/revoke", l.ID), map[string]any{}); st != 404 {
		t.Errorf("the hospital revoked the clinic's link: %d", st)
	}
	if st := phone.do("GET", "/studies", from, nil); st != 200 {
		t.Errorf("after the hospital's attempt: %d", st)
	}
	// A revoked link answers like an unknown one, PIN or not.
	all := makeLink(t, clinic, map[string]any{"patientId": "P1"})
	other := r.recipient(t, all)
	if st := other.unlock(all.PIN, ""); st != 200 {
		t.Fatalf("unlock: %d %s", st, other.body)
	}
	if st := other.do("GET", "/studies", "", nil); st != 200 || strings.Count(string(other.body), `"studyInstanceUID"`) != 2 {
		t.Errorf("a link of all the patient's studies lists %s", other.body)
	}
	if st := clinic.post(fmt.Sprintf("/api/links/%d/revoke", all.ID), map[string]any{}); st != 200 || !strings.Contains(string(clinic.body), `"revoked"`) {
		t.Fatalf("revoke: %d %s", st, clinic.body)
	}
	unknown := r.recipient(t, madeLink{URL: "/link/" + base64.RawURLEncoding.EncodeToString(make([]byte, 32))})
	for _, c := range []struct {
		name string
		p    *recipient
	}{{"revoked", other}, {"unknown", unknown}} {
		for _, call := range []func() int{func() int { return c.p.do("GET", "/studies", "", nil) }, func() int { return c.p.unlock(all.PIN, "") },
			func() int { return c.p.do("GET", "", "", nil) }} {
			if st := call(); st != 404 || c.p.state != "unknown" {
				t.Errorf("%s link: %d %s", c.name, st, c.p.body)
			}
		}
	}
	// PIN attempts are limited per address as well, gently (ten a minute); malformed PINs do not count against the link.
	for i := 1; i <= 11; i++ {
		want := 400
		if i == 11 {
			want = 429
		}
		if st := phone.unlock("12", "198.51.100.99"); st != want {
			t.Fatalf("attempt %d from one address: %d %s, want %d", i, st, phone.body, want)
		}
	}
	if st := phone.unlock(l.PIN, from); st != 200 {
		t.Errorf("the right PIN from another address: %d %s", st, phone.body)
	}
	// At its expiry the first link stops, for the view already open and for the PIN; a 7-day one goes on.
	fresh := makeLink(t, clinic, map[string]any{"patientId": "P1"})
	r.clock.Advance(25 * time.Hour)
	if st := phone.do("GET", "/studies", from, nil); st != 410 || phone.state != "expired" {
		t.Errorf("studies after the expiry: %d %s", st, phone.body)
	}
	if st := phone.unlock(l.PIN, from); st != 410 {
		t.Errorf("the PIN after the expiry: %d %s", st, phone.body)
	}
	// A view lasts 30 minutes.
	third := r.recipient(t, fresh)
	if st := third.unlock(fresh.PIN, ""); st != 200 {
		t.Fatalf("unlock: %d %s", st, third.body)
	}
	r.clock.Advance(31 * time.Minute)
	if st := third.do("GET", "/studies", "", nil); st != 401 || third.state != "pin" {
		t.Errorf("a view after 31 minutes: %d %s", st, third.body)
	}
}

// TestShareLinkPhone opens a link as its recipient would, on a phone (390×844): the PIN on a numeric keyboard, the
// study, and its first image drawn, then the next.
func TestShareLinkPhone(t *testing.T) {
	r := newRegion(t)
	out := artifacts(t)
	l := makeLink(t, r.as("kato@kita-clinic"), map[string]any{"patientId": "P1", "studies": []string{r.p1a.studyUID}})
	ctx, cancel := browser(t)
	defer cancel()
	step := stepper(ctx, t, out)
	step("01-pin", chromedp.EmulateViewport(390, 844, chromedp.EmulatePortrait, chromedp.EmulateMobile, chromedp.EmulateTouch),
		chromedp.Navigate(r.srv.URL+"/link/"+l.token()), chromedp.WaitVisible("#pin"))
	var mode string
	if err := js(ctx, t, `document.querySelector('#pin').inputMode`, &mode); err != nil || mode != "numeric" {
		t.Errorf("the PIN field's keyboard: %q %v", mode, err)
	}
	step("02-wrong-pin", chromedp.SendKeys("#pin", wrongPIN(l.PIN)), chromedp.Click("#unlock"), chromedp.WaitVisible("#message.error"))
	step("03-studies", chromedp.SendKeys("#pin", l.PIN), chromedp.Click("#unlock"), chromedp.WaitVisible("#studies li"))
	text, _ := chromedp.Run(ctx, chromedp.Text("main"))
	if !strings.Contains(text, "北町クリニック") || !strings.Contains(text, "CT") {
		t.Errorf("the study list reads %q", text)
	}
	step("04-image", chromedp.Click("#studies button.series"), chromedp.WaitVisible("#image"))
	drawn := func() (int, string) {
		t.Helper()
		var res struct {
			W   int
			Src string
		}
		for range 100 {
			if err := js(ctx, t, `({w: document.querySelector('#image').complete ? document.querySelector('#image').naturalWidth : 0, src: document.querySelector('#image').src})`, &res); err != nil {
				t.Fatal(err)
			}
			if res.W > 0 {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		return res.W, res.Src
	}
	w, first := drawn()
	if w == 0 {
		t.Fatal("the image was not drawn")
	}
	var fits bool
	if err := js(ctx, t, `(() => { const b = document.querySelector('#image').getBoundingClientRect();
		return b.width > 200 && b.right <= innerWidth + 1 && b.bottom <= innerHeight + 1 && document.documentElement.scrollWidth <= innerWidth; })()`, &fits); err != nil || !fits {
		t.Errorf("the image does not fit the phone's screen (%v)", err)
	}
	step("05-next", chromedp.Click("#next"), chromedp.WaitVisible("#pos"))
	pos, _ := chromedp.Run(ctx, chromedp.Text("#pos"))
	if _, second := drawn(); second == first || pos != "2 / 2" {
		t.Errorf("next: %q, image %s", pos, second)
	}
	screenshot(ctx, t, out, "06-second-image")
}

// liveEvents follows /api/events with token and returns a function that waits for the next "link" event.
func liveEvents(t *testing.T, r *region, token string) func(time.Duration) string {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", r.srv.URL+"/api/events", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /api/events: %v", err)
	}
	got := make(chan string, 100)
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		event := ""
		for sc.Scan() {
			if e, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
				event = e
			}
			if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok && event == "link" {
				got <- "link " + d
			}
		}
	}()
	return func(wait time.Duration) string {
		select {
		case s := <-got:
			return s
		case <-time.After(wait):
			return ""
		}
	}
}

// TestLinkDialog: from the study list a clinic doctor makes a share link and sees, once, its address, its QR code
// and its PIN; the links page lists it without the PIN (TestShareLinkPhone opens the public page).
func TestLinkDialog(t *testing.T) {
	r := newRegion(t)
	ctx, cancel := browser(t)
	defer cancel()
	out := artifacts(t)
	step := stepper(ctx, t, out)
	step("01-dialog", r.loginSteps(r.users["kato@kita-clinic"]), chromedp.WaitVisible("#search"), chromedp.Click("#tour-skip"),
		chromedp.Click(`button[data-link="`+r.p1a.studyUID+`"]`), chromedp.WaitVisible("#link-form"), chromedp.Click("#link-create"),
		chromedp.WaitVisible("#link-created"), chromedp.WaitVisible("#link-qr"))
	pin, _ := chromedp.Run(ctx, chromedp.Text("#link-pin"))
	url, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.querySelector('#link-url').value || document.querySelector('#link-url').textContent).trim()`))
	pin = strings.TrimSpace(pin)
	if len(pin) < 6 || !strings.Contains(url, "/link/") {
		t.Fatalf("the dialog shows PIN %q and address %q", pin, url)
	}
	step("02-list", hashRoute("#/links"), chromedp.WaitVisible(`[data-link]`))
	if body, _ := chromedp.Run(ctx, chromedp.Text("#app")); strings.Contains(body, pin) {
		t.Errorf("the links page shows the PIN")
	}
}
