package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"renkei"
	"renkei/identity"
)

func (c *client) loginState() (next, csrf string) {
	var s struct{ Next, CSRFToken string }
	json.Unmarshal(c.body, &s)
	return s.Next, s.CSRFToken
}

func TestLoginFailures(t *testing.T) {
	r := newRegion(t)
	u := r.users["tanaka@chuo-hospital"]
	code := func() string {
		c, _ := totp.GenerateCode(u.totpKey, r.clock.Now())
		return c
	}

	t.Run("wrong password and unknown login answer alike", func(t *testing.T) {
		a, b := &client{r: r}, &client{r: r}
		if a.post("/api/login", map[string]string{"login": u.login, "password": "wrong password!"}) != 401 ||
			b.post("/api/login", map[string]string{"login": "nobody@nowhere", "password": "wrong password!"}) != 401 {
			t.Fatalf("statuses %d %d, want 401 401", a.status, b.status)
		}
		if string(a.body) != string(b.body) {
			t.Errorf("a wrong password and an unknown login answer differently:\n%s\n%s", a.body, b.body)
		}
		if a.cookie != "" {
			t.Error("a failed login set a session cookie")
		}
	})

	t.Run("the password step alone opens nothing", func(t *testing.T) {
		c := &client{r: r}
		if c.post("/api/login", map[string]string{"login": u.login, "password": u.password}) != 200 {
			t.Fatal(c.status, string(c.body))
		}
		next, csrf := c.loginState()
		if next != "second-factor" {
			t.Fatalf("next %q", next)
		}
		c.csrf = csrf
		if st := c.get("/dicomweb/studies"); st != 403 || !strings.Contains(string(c.body), "second login step") {
			t.Errorf("DICOMweb after the password only: %d %s", st, c.body)
		}
		partial := c.cookie
		if c.post("/api/login/second-factor", map[string]string{"factor": "totp", "code": "000000"}) != 401 {
			t.Errorf("a wrong TOTP code: %d", c.status)
		}
		if c.post("/api/login/second-factor", map[string]string{"factor": "totp", "code": code()}) != 200 {
			t.Fatalf("the right TOTP code: %d %s", c.status, c.body)
		}
		// Session fixation: the id known before the login completed is not the full session's, and is dead now.
		if c.cookie == partial {
			t.Error("the session id did not change when the login completed")
		}
		old := &client{r: r, cookie: partial, csrf: csrf}
		if st := old.get("/api/me"); st != 401 {
			t.Errorf("the pre-login session id still works: %d", st)
		}
		if st := c.get("/dicomweb/studies"); st != 200 {
			t.Errorf("after both steps: %d %s", st, c.body)
		}
		// Replay: the same code again, in a new login within the same 30 seconds, is refused.
		again := &client{r: r}
		again.post("/api/login", map[string]string{"login": u.login, "password": u.password})
		_, again.csrf = again.loginState()
		if st := again.post("/api/login/second-factor", map[string]string{"factor": "totp", "code": code()}); st != 401 {
			t.Errorf("a replayed TOTP code: %d", st)
		}
	})

	t.Run("CSRF", func(t *testing.T) {
		r.clock.Advance(time.Minute)
		c := r.as(u.login)
		for _, tok := range []string{"", "not-the-token"} {
			c2 := &client{r: r, cookie: c.cookie}
			st := c2.do("POST", "/api/shares", strings.NewReader(`{"patientId":"P1","toInstitution":"kita-clinic","purpose":"consult"}`),
				"Content-Type", "application/json", "X-CSRF-Token", tok)
			if st != 403 || !strings.Contains(string(c2.body), "CSRF") {
				t.Errorf("POST with CSRF token %q: %d %s", tok, st, c2.body)
			}
		}
		// A bearer token is not a cookie: a browser cannot be made to send it, so it needs no CSRF token.
		if st := r.withToken(r.clinicWrite).post("/api/logout", nil); st == 403 {
			t.Errorf("a token request was asked for a CSRF token")
		}
	})

	t.Run("timeouts", func(t *testing.T) {
		r.clock.Advance(time.Minute)
		c := r.as(u.login)
		r.clock.Advance(29 * time.Minute)
		if st := c.get("/api/me"); st != 200 {
			t.Fatalf("after 29 idle minutes: %d", st)
		}
		r.clock.Advance(31 * time.Minute)
		if st := c.get("/api/me"); st != 401 {
			t.Errorf("after 31 idle minutes: %d, want 401", st)
		}
		c = r.as(u.login)
		for i := 0; i < 36; i++ { // 12 hours of activity every 20 minutes
			r.clock.Advance(20 * time.Minute)
			c.get("/api/me")
		}
		if c.status != 401 {
			t.Errorf("after 12 hours of use: %d, want 401 (absolute timeout)", c.status)
		}
	})

	t.Run("logout everywhere", func(t *testing.T) {
		r.clock.Advance(time.Minute)
		a := r.as(u.login)
		b := r.as(u.login)
		if st := a.post("/api/logout", map[string]bool{"everywhere": true}); st != 204 {
			t.Fatalf("logout: %d %s", st, a.body)
		}
		if a.get("/api/me") != 401 || b.get("/api/me") != 401 {
			t.Errorf("after logout everywhere: %d %d, want 401 401", a.status, b.status)
		}
	})

	t.Run("lockout", func(t *testing.T) {
		r.clock.Advance(time.Minute)
		c := &client{r: r}
		for i := 0; i < 5; i++ {
			c.post("/api/login", map[string]string{"login": u.login, "password": "not the password"})
		}
		if st := c.post("/api/login", map[string]string{"login": u.login, "password": u.password}); st != 403 || !strings.Contains(string(c.body), "locked") {
			t.Errorf("the right password after 5 failures: %d %s", st, c.body)
		}
		r.clock.Advance(16 * time.Minute)
		if st := c.post("/api/login", map[string]string{"login": u.login, "password": u.password}); st != 200 {
			t.Errorf("after the lockout period: %d %s", st, c.body)
		}
	})

	t.Run("rate limit per address", func(t *testing.T) {
		r.clock.Advance(time.Hour)
		c := &client{r: r}
		got429 := false
		for i := 0; i < 15; i++ {
			// Password spraying: one address, many logins.
			if c.post("/api/login", map[string]string{"login": "user" + string(rune('a'+i)), "password": "Summer2026!!"}) == 429 {
				got429 = true
			}
		}
		if !got429 {
			t.Error("15 logins from one address in a moment were not slowed down")
		}
	})

	t.Run("token revoked mid-use", func(t *testing.T) {
		r.clock.Advance(time.Hour)
		c := r.withToken(r.hospitalRead)
		if st := c.get("/dicomweb/studies"); st != 200 {
			t.Fatal(st)
		}
		tokens, _ := r.db.Tokens(context.Background(), r.hospital.PK)
		if err := r.db.RevokeToken(context.Background(), tokens[0].PK, 0, nil); err != nil {
			t.Fatal(err)
		}
		if st := c.get("/dicomweb/studies"); st != 401 {
			t.Errorf("a revoked token: %d", st)
		}
	})
}

// TestFirstLogin walks a new user from the administrator's one-time password through enrolment of an authenticator
// app, the password change, and a later login with a recovery code; and an administrator's reset.
func TestFirstLogin(t *testing.T) {
	r := newRegion(t)
	ctx := context.Background()
	u := renkei.User{Login: "ito@chuo-hospital", Name: "伊藤", Institution: r.hospital, Role: renkei.Clerk}
	otp, err := r.ids.CreateUser(ctx, renkei.System, &u)
	if err != nil {
		t.Fatal(err)
	}
	c := &client{r: r}
	if st := c.post("/api/login", map[string]string{"login": u.Login, "password": otp}); st != 200 {
		t.Fatalf("first login: %d %s", st, c.body)
	}
	next, csrf := c.loginState()
	c.csrf = csrf
	if next != "enrol-second-factor" {
		t.Fatalf("a new staff user: next %q, want enrol-second-factor", next)
	}
	if st := c.post("/api/login/totp/start", nil); st != 200 {
		t.Fatalf("totp start: %d %s", st, c.body)
	}
	var enrol struct{ Secret, URL string }
	json.Unmarshal(c.body, &enrol)
	if !strings.HasPrefix(enrol.URL, "otpauth://totp/") {
		t.Errorf("enrolment URL %q", enrol.URL)
	}
	if st := c.post("/api/login/totp/confirm", map[string]string{"secret": enrol.Secret, "code": "123456"}); st != 400 {
		t.Errorf("confirming with a wrong code: %d", st)
	}
	code, _ := totp.GenerateCode(enrol.Secret, r.clock.Now())
	if st := c.post("/api/login/totp/confirm", map[string]string{"secret": enrol.Secret, "code": code}); st != 200 {
		t.Fatalf("totp confirm: %d %s", st, c.body)
	}
	var conf struct {
		Login struct {
			Next      string
			CSRFToken string
		}
		RecoveryCodes []string
	}
	json.Unmarshal(c.body, &conf)
	c.csrf = conf.Login.CSRFToken
	if conf.Login.Next != "change-password" || len(conf.RecoveryCodes) != 10 {
		t.Fatalf("after enrolment: next %q, %d recovery codes", conf.Login.Next, len(conf.RecoveryCodes))
	}
	if st := c.get("/dicomweb/studies"); st != 403 {
		t.Errorf("with the one-time password unchanged: %d", st)
	}
	for _, bad := range []string{"short", "ito@chuo-hospital-2026", "password1234"} {
		if st := c.post("/api/password", map[string]string{"current": otp, "new": bad}); st != 400 {
			t.Errorf("new password %q: %d, want 400", bad, st)
		}
	}
	if st := c.post("/api/password", map[string]string{"current": otp, "new": "aozora bunko 2026"}); st != 200 {
		t.Fatalf("password change: %d %s", st, c.body)
	}
	if st := c.get("/dicomweb/studies"); st != 200 {
		t.Errorf("after the change: %d %s", st, c.body)
	}

	// A lost phone: a recovery code works once.
	r.clock.Advance(time.Minute)
	for i, want := range []int{200, 401} {
		l := &client{r: r}
		l.post("/api/login", map[string]string{"login": u.Login, "password": "aozora bunko 2026"})
		_, l.csrf = l.loginState()
		if st := l.post("/api/login/second-factor", map[string]string{"factor": "recovery", "code": strings.ToUpper(conf.RecoveryCodes[0])}); st != want {
			t.Errorf("recovery code, use %d: %d, want %d", i+1, st, want)
		}
	}

	// The user also has a security key (lost with their bag, say): the reset must forget it, or it would still log in
	// and the user could neither use nor replace it.
	if err := r.db.AddWebAuthnCredential(ctx, &renkei.WebAuthnCredential{ID: []byte("lost-key"), User: u.PK, Name: "病棟の鍵", Record: []byte(`{}`), CreatedAt: time.Now()}, nil); err != nil {
		t.Fatal(err)
	}
	// The administrator resets: the old password and session die, a new one-time password works.
	pw, err := r.ids.ResetUser(ctx, &renkei.Principal{Kind: renkei.UserPrincipal, Name: "admin@chuo-hospital", Institution: r.hospital.PK,
		Role: renkei.InstitutionAdmin}, u.PK)
	if err != nil {
		t.Fatal(err)
	}
	if st := c.get("/api/me"); st != 401 {
		t.Errorf("the session survived the reset: %d", st)
	}
	l := &client{r: r}
	if st := l.post("/api/login", map[string]string{"login": u.Login, "password": pw}); st != 200 {
		t.Fatalf("the reset password: %d %s", st, l.body)
	}
	if next, _ := l.loginState(); next != "enrol-second-factor" {
		t.Errorf("after a reset: next %q, want enrol-second-factor", next)
	}
	if keys, err := r.db.WebAuthnCredentials(ctx, u.PK); err != nil || len(keys) != 0 {
		t.Errorf("security keys after a reset: %d %v, want none", len(keys), err)
	}
	// An institution admin cannot reset another institution's user.
	if _, err := r.ids.ResetUser(ctx, &renkei.Principal{Kind: renkei.UserPrincipal, Name: "admin@kita-clinic", Institution: r.clinic.PK,
		Role: renkei.InstitutionAdmin}, u.PK); renkei.ErrorKind(err) != renkei.Forbidden {
		t.Errorf("another institution's admin reset the user: %v", err)
	}
}

// TestTrustedProxy: behind a reverse proxy, logins are limited per client named in X-Forwarded-For (not all clients
// together as the proxy's one address), and the audit trail names the client; a client that is not a trusted proxy
// cannot choose its address by sending the header itself.
func TestTrustedProxy(t *testing.T) {
	r := newRegion(t)
	attempt := func(forwarded string) int {
		c := &client{r: r}
		b, _ := json.Marshal(map[string]string{"login": "nobody@nowhere", "password": "wrong password!"})
		return c.do("POST", "/api/login", strings.NewReader(string(b)), "Content-Type", "application/json", "X-Forwarded-For", forwarded)
	}
	limited := func(forwarded func(i int) string) bool {
		for i := 0; i < 15; i++ {
			if attempt(forwarded(i)) == 429 {
				return true
			}
		}
		return false
	}
	// Not trusted: the header is ignored, so 15 "different" clients are one address and get limited.
	if !limited(func(i int) string { return fmt.Sprintf("198.51.100.%d", i) }) {
		t.Error("an untrusted client escaped the login limit by sending X-Forwarded-For")
	}
	r.clock.Advance(time.Hour)
	r.front.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	if limited(func(i int) string { return fmt.Sprintf("203.0.113.%d, 127.0.0.1", i) }) {
		t.Error("15 different clients behind the proxy were limited as one")
	}
	if !limited(func(int) string { return "192.0.2.9" }) {
		t.Error("one client behind the proxy was not limited")
	}
	events := r.events(0)
	if last := events[len(events)-1]; last.Source != "192.0.2.9" {
		t.Errorf("the audit trail names %q, want the client behind the proxy", last.Source)
	}
}

// TestMySecurityKeys: a user lists their security keys and removes one (a key lost with a bag), which is audited and
// stops it from logging in; the last second factor cannot be removed, or the account would have none.
func TestMySecurityKeys(t *testing.T) {
	r := newRegion(t)
	ctx := t.Context()
	u, _, err := r.db.UserByLogin(ctx, "tanaka@chuo-hospital")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []struct{ id, name string }{{"key-ward", "病棟の鍵"}, {"key-bag", "鞄の鍵"}} {
		if err := r.db.AddWebAuthnCredential(ctx, &renkei.WebAuthnCredential{ID: []byte(k.id), User: u.PK, Name: k.name, Record: []byte(`{}`)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	doctor := r.as("tanaka@chuo-hospital")
	var keys []struct{ ID, Name string }
	doctor.getJSON("/api/me/keys", &keys)
	if len(keys) != 2 || keys[0].Name != "病棟の鍵" || keys[1].Name != "鞄の鍵" {
		t.Fatalf("the user's keys: %+v", keys)
	}
	if st := r.as("kato@kita-clinic").do("DELETE", "/api/me/keys/"+keys[1].ID, nil); st != 404 {
		t.Errorf("another user removed the key: %d", st)
	}
	if st := doctor.do("DELETE", "/api/me/keys/"+keys[1].ID, nil); st != 204 {
		t.Fatalf("remove the lost key: %d %s", st, doctor.body)
	}
	doctor.getJSON("/api/me/keys", &keys)
	if len(keys) != 1 || keys[0].Name != "病棟の鍵" {
		t.Errorf("after the removal: %+v", keys)
	}
	removed := false
	for _, e := range r.events(0) {
		removed = removed || (e.Actor == "tanaka@chuo-hospital" && e.Detail == "removed a security key: 鞄の鍵")
	}
	if !removed {
		t.Error("the removal is not in the audit trail")
	}
	// A user whose only second factor is one key cannot remove it.
	keyOnly := u
	keyOnly.HasTOTP = false
	now := time.Now()
	a := &identity.Authenticated{Principal: &renkei.Principal{Kind: renkei.UserPrincipal, ID: u.PK, Name: u.Login, Institution: r.hospital.PK},
		User: keyOnly, Session: renkei.Session{SecondFactorAt: &now}}
	if err := r.ids.RemoveSecurityKey(ctx, a, []byte("key-ward")); renkei.ErrorKind(err) != renkei.Conflict {
		t.Errorf("removing the last second factor: %v, want a conflict", err)
	}
}
