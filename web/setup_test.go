package web_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/pquerna/otp/totp"
	_ "modernc.org/sqlite"

	"renkei"
	"renkei/access"
	"renkei/archive"
	"renkei/blob/disk"
	"renkei/clinical"
	"renkei/dicomweb"
	"renkei/directory"
	"renkei/identity"
	"renkei/internal/dicomtest"
	"renkei/internal/testclock"
	"renkei/sqlstore"
	"renkei/web"
)

// The tests run the whole HTTP stack as `renkei serve` wires it (web front → dicomweb → archive behind the access
// decorator → SQLite file and blob folder) on httptest's real listener, with a clock the tests can move.

// region is a running renkei with two institutions: a clinic (A) and a hospital (B), each with a physician, an
// administrator and API tokens, and the clinic's studies.
type region struct {
	t      testing.TB
	dir    string
	db     *sqlstore.DB
	ids    *identity.Service
	access *access.Index
	front  *web.Server
	srv    *httptest.Server
	clock  *testclock.Clock
	key    *sqlstore.AuditKey
	pages  map[string]string // test pages by path, set before the server is used

	clinic, hospital renkei.Institution
	users            map[string]testUser // by login
	clinicWrite      string              // the clinic's read-write API token
	hospitalRead     string              // the hospital's read-only API token

	// The clinic's studies: two of patient P1 (a CT and an MR-like CT), one of patient P2.
	p1a, p1b, p2 study
}

type testUser struct {
	login, password, totpKey string
	pk                       int64
}

type study struct {
	patient             renkei.PatientKey
	studyUID, seriesUID string
	instanceUIDs        []string
}

func quietLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func newRegion(t testing.TB) *region {
	t.Helper()
	return newRegionOn(t, "")
}

// newRegionOn is newRegion on the index target names (a postgres:// URL from pgtest.URL); "" is the SQLite file.
func newRegionOn(t testing.TB, target string) *region {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	if target == "" {
		target = filepath.Join(dir, "index.db")
	}
	db, err := sqlstore.Open(ctx, target)
	if err != nil {
		t.Fatal(err)
	}
	_, priv, _ := ed25519.GenerateKey(nil)
	key := &sqlstore.AuditKey{ID: "test", Private: priv}
	db.AuditKey = key
	blobs, err := disk.Open(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	clk := testclock.New(time.Now())
	db.Now = clk.Now
	logger := quietLogger()
	ax := access.New(db, db, db)
	ax.Now = clk.Now
	arch := archive.New(ax, blobs, logger)
	ids := identity.New(db)
	ids.Now = clk.Now
	front := web.New(ids, db, dicomweb.New(arch, logger, "/dicomweb"), logger)
	front.Now, front.Blobs = clk.Now, blobs
	cs := clinical.New(db)
	cs.Now = clk.Now
	front.UseClinical(cs)
	front.Directory = directory.New(db)
	front.UseConsults(db)
	front.Directory.Now = clk.Now
	front.Gateways = db
	front.Alerts = db
	r0 := &region{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		// Test pages (a browser's side of a ceremony) are served beside the API, from the same origin.
		if h, ok := r0.pages[req.URL.Path]; ok {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			io.WriteString(w, h)
			return
		}
		front.ServeHTTP(w, req)
	}))
	t.Cleanup(func() {
		srv.Close()
		db.Close()
	})
	r := r0
	*r = region{t: t, dir: dir, db: db, ids: ids, access: ax, front: front, srv: srv, clock: clk, key: key, users: map[string]testUser{},
		pages: map[string]string{}}

	system := renkei.System
	r.clinic = renkei.Institution{ID: "kita-clinic", Name: "北町クリニック", Kind: renkei.Clinic, Issuer: "KITA"}
	r.hospital = renkei.Institution{ID: "chuo-hospital", Name: "中央病院", Kind: renkei.Hospital, Issuer: "CHUO"}
	for _, in := range []*renkei.Institution{&r.clinic, &r.hospital} {
		if err := db.PutInstitution(ctx, in, nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range []struct {
		login string
		in    renkei.Institution
		role  renkei.Role
	}{
		{"kato@kita-clinic", r.clinic, renkei.Physician},
		{"admin@kita-clinic", r.clinic, renkei.InstitutionAdmin},
		{"tanaka@chuo-hospital", r.hospital, renkei.Physician},
		{"suzuki@chuo-hospital", r.hospital, renkei.Radiologist},
		{"admin@chuo-hospital", r.hospital, renkei.InstitutionAdmin},
	} {
		r.addUser(u.login, u.in, u.role)
	}
	var err2 error
	r.clinicWrite, err2 = ids.CreateToken(ctx, system, &renkei.APIToken{Institution: r.clinic.PK, Name: "clinic-gateway", Write: true})
	if err2 != nil {
		t.Fatal(err2)
	}
	r.hospitalRead, err2 = ids.CreateToken(ctx, system, &renkei.APIToken{Institution: r.hospital.PK, Name: "hospital-viewer"})
	if err2 != nil {
		t.Fatal(err2)
	}
	r.p1a = r.stow(r.clinicWrite, "P1", "Yamada^Taro=山田^太郎", 1, 2)
	r.p1b = r.stow(r.clinicWrite, "P1", "Yamada^Taro=山田^太郎", 2, 1)
	r.p2 = r.stow(r.clinicWrite, "P2", "Sato^Jiro=佐藤^次郎", 3, 1)
	// P1 consented on paper to disclosure in the region; P2 did not (yet).
	if st := r.as("kato@kita-clinic").post("/api/consents", map[string]any{"patientId": "P1", "scope": []string{"region"}, "method": "paper",
		"document": "JVBERi0xLjQKJcfsj6IKJSVFT0YK", "givenAt": r.clock.Now().Format("2006-01-02")}); st != 201 {
		t.Fatalf("consent: %d", st)
	}
	return r
}

// addUser creates an enrolled user (password and TOTP) the way an admin and the user's first login would.
func (r *region) addUser(login string, in renkei.Institution, role renkei.Role) testUser {
	r.t.Helper()
	return r.addUserAs(renkei.User{Login: login, Name: login, Institution: in, Role: role})
}

// addPatientUser is addUser for a patient's own account at in, as an accepted invitation makes it.
func (r *region) addPatientUser(login string, in renkei.Institution, patient int64) testUser {
	r.t.Helper()
	return r.addUserAs(renkei.User{Login: login, Name: login, Institution: in, Role: renkei.PatientRole, PatientPK: patient})
}

func (r *region) addUserAs(u renkei.User) testUser {
	r.t.Helper()
	ctx := context.Background()
	login := u.Login
	pw := fmt.Sprintf("correct horse battery staple %d", len(r.users))
	if err := r.ids.CreateUserWithPassword(ctx, renkei.System, &u, pw); err != nil {
		r.t.Fatal(err)
	}
	key, err := totp.Generate(totp.GenerateOpts{Issuer: "renkei", AccountName: login})
	if err != nil {
		r.t.Fatal(err)
	}
	secret, f := key.Secret(), false
	if err := r.db.UpdateUser(ctx, u.PK, renkei.UserUpdate{TOTPSecret: &secret, MustChange: &f}, nil); err != nil {
		r.t.Fatal(err)
	}
	tu := testUser{login: login, password: pw, totpKey: secret, pk: u.PK}
	r.users[login] = tu
	return tu
}

// stow stores a small CT study of n instances by STOW-RS with token.
func (r *region) stow(token, patientID, name string, seed int64, n int) study {
	r.t.Helper()
	st := study{patient: renkei.PatientKey{Issuer: "KITA", ID: patientID}}
	body, ctype := r.stowBody(patientID, name, seed, n)
	req, _ := http.NewRequest("POST", r.srv.URL+"/dicomweb/studies", body)
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	var res map[string]json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil || resp.StatusCode != 200 {
		r.t.Fatalf("STOW-RS: %d %v", resp.StatusCode, err)
	}
	// The study and series UIDs are derived from the seed by dicomtest; read them back from the answer.
	var seq struct {
		Value []map[string]struct{ Value []string }
	}
	json.Unmarshal(res["00081199"], &seq)
	refs := seq.Value
	if len(refs) != n {
		r.t.Fatalf("STOW-RS stored %d of %d", len(refs), n)
	}
	var found []map[string]json.RawMessage
	c := &client{r: r, token: token}
	c.getJSON("/dicomweb/instances?SOPInstanceUID="+refs[0]["00081155"].Value[0], &found)
	if len(found) != 1 {
		r.t.Fatalf("the stored instance is not found by its own institution: %v", found)
	}
	st.studyUID, st.seriesUID = stringValue(found[0], "0020000D"), stringValue(found[0], "0020000E")
	st.instanceUIDs = st.instanceUIDs[:0]
	for _, ref := range refs {
		st.instanceUIDs = append(st.instanceUIDs, ref["00081155"].Value[0])
	}
	return st
}

// stowBody is a STOW-RS body of n small CT instances of one study, and its Content-Type.
func (r *region) stowBody(patientID, name string, seed int64, n int) (io.Reader, string) {
	return r.stowBodyOf(dicomtest.CTOptions{PatientID: patientID, PatientName: name, Seed: seed}, n)
}

// stowBodyBorn is stowBody of one instance of a patient with a birth date (and sex M).
func (r *region) stowBodyBorn(patientID, name, birth string, seed int64) (io.Reader, string) {
	return r.stowBodyOf(dicomtest.CTOptions{PatientID: patientID, PatientName: name, PatientBirthDate: birth, PatientSex: "M", Seed: seed}, 1)
}

func (r *region) stowBodyOf(base dicomtest.CTOptions, n int) (io.Reader, string) {
	r.t.Helper()
	seed := base.Seed
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for i := 1; i <= n; i++ {
		path := filepath.Join(r.dir, fmt.Sprintf("ct-%d-%d.dcm", seed, i))
		o := base
		o.Rows, o.Cols, o.InstanceNumber = 16, 16, i
		if err := dicomtest.CT(path, o); err != nil {
			r.t.Fatal(err)
		}
		b, _ := os.ReadFile(path)
		pw, _ := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/dicom"}})
		pw.Write(b)
	}
	mw.Close()
	return &body, `multipart/related; type="application/dicom"; boundary=` + mw.Boundary()
}

// client calls the server as one caller: a logged-in browser (cookie and CSRF token) or an API token.
type client struct {
	r                   *region
	cookie, csrf, token string
	// last response's status, headers and body
	status int
	header http.Header
	body   []byte
}

// as logs a user in with password and TOTP, as the UI does.
func (r *region) as(login string) *client {
	r.t.Helper()
	u := r.users[login]
	c := &client{r: r}
	if st := c.post("/api/login", map[string]string{"login": login, "password": u.password}); st != 200 {
		r.t.Fatalf("login %s: %d %s", login, st, c.body)
	}
	var s struct{ CSRFToken string }
	json.Unmarshal(c.body, &s)
	c.csrf = s.CSRFToken
	code, _ := totp.GenerateCode(u.totpKey, r.clock.Now())
	if st := c.post("/api/login/second-factor", map[string]string{"factor": "totp", "code": code}); st != 200 {
		r.t.Fatalf("second factor %s: %d %s", login, st, c.body)
	}
	json.Unmarshal(c.body, &s)
	c.csrf = s.CSRFToken
	// The next login of the same user in this test must not reuse this time step's code.
	r.clock.Advance(30 * time.Second)
	return c
}

func (r *region) withToken(token string) *client { return &client{r: r, token: token} }

func (c *client) do(method, path string, body io.Reader, hdr ...string) int {
	c.r.t.Helper()
	req, err := http.NewRequest(method, c.r.srv.URL+path, body)
	if err != nil {
		c.r.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.cookie != "" {
		req.AddCookie(&http.Cookie{Name: web.SessionCookie, Value: c.cookie})
	}
	if c.csrf != "" && method != "GET" && req.Header.Get("X-CSRF-Token") == "" {
		req.Header.Set("X-CSRF-Token", c.csrf)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.r.t.Fatal(err)
	}
	defer resp.Body.Close()
	c.body, _ = io.ReadAll(resp.Body)
	c.status, c.header = resp.StatusCode, resp.Header
	for _, ck := range resp.Cookies() {
		if ck.Name == web.SessionCookie {
			c.cookie = ck.Value
		}
	}
	return c.status
}

func (c *client) get(path string, hdr ...string) int { return c.do("GET", path, nil, hdr...) }

func (c *client) post(path string, v any) int {
	c.r.t.Helper()
	b, _ := json.Marshal(v)
	return c.do("POST", path, bytes.NewReader(b), "Content-Type", "application/json")
}

func (c *client) getJSON(path string, v any) {
	c.r.t.Helper()
	if st := c.get(path); st != 200 {
		c.r.t.Fatalf("GET %s: %d %s", path, st, c.body)
	}
	if err := json.Unmarshal(c.body, v); err != nil {
		c.r.t.Fatalf("GET %s: %v", path, err)
	}
}

// rawDB opens the index file behind renkei's back, as someone with access to the server's disk could.
func (r *region) rawDB() *sql.DB {
	r.t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(r.dir, "index.db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { db.Close() })
	return db
}

// events returns the audit events after seq, oldest first.
func (r *region) events(after int64) []renkei.AuditEvent {
	r.t.Helper()
	list, err := r.db.AuditEvents(context.Background(), renkei.AuditFilter{Limit: 100000})
	if err != nil {
		r.t.Fatal(err)
	}
	var out []renkei.AuditEvent
	for i := len(list) - 1; i >= 0; i-- {
		if list[i].Seq > after {
			out = append(out, list[i])
		}
	}
	return out
}

func (r *region) lastSeq() int64 {
	ev := r.events(0)
	if len(ev) == 0 {
		return 0
	}
	return ev[len(ev)-1].Seq
}

// stringValue is the first value of a string attribute of a DICOM JSON object.
func stringValue(obj map[string]json.RawMessage, tag string) string {
	var a struct{ Value []string }
	json.Unmarshal(obj[tag], &a)
	if len(a.Value) == 0 {
		return ""
	}
	return a.Value[0]
}

// loginSteps are a browser's login as u, with the password and the authenticator's current code, ending on the
// study list.
func (r *region) loginSteps(u testUser) chromedp.Action[chromedp.Void] {
	code, _ := totp.GenerateCode(u.totpKey, r.clock.Now())
	return chromedp.Steps(chromedp.Navigate(r.srv.URL+"/"), chromedp.WaitVisible("#login-name"), chromedp.SendKeys("#login-name", u.login),
		chromedp.SendKeys("#login-password", u.password), chromedp.Click(`#login button[type="submit"]`), chromedp.WaitVisible("#totp-code"),
		chromedp.SendKeys("#totp-code", code), chromedp.Click(`#second button[type="submit"]`))
}
