package web_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
	"time"
	"unicode"

	"github.com/chromedp/chromedp"
	"github.com/google/go-cmp/cmp"

	"renkei"
)

// problemBody is the problem+json of a refused request, with renkei's code member.
type problemBody struct {
	Title, Detail, Code string
	Status              int
}

func lastProblem(t *testing.T, c *client) problemBody {
	t.Helper()
	var p problemBody
	if err := json.Unmarshal(c.body, &p); err != nil {
		t.Fatalf("%d %s: %v", c.status, c.body, err)
	}
	return p
}

// japanese says whether s is a Japanese sentence (English ones may quote a word in kanji, as 同意).
func japanese(s string) bool {
	for _, r := range s {
		if unicode.Is(unicode.Hiragana, r) {
			return true
		}
	}
	return false
}

// TestErrorLanguage: the same refusal reads in Japanese for a Japanese user or a request that asks for Japanese,
// and in English for English users and for API clients that do not ask; title and code do not change with it.
func TestErrorLanguage(t *testing.T) {
	r := newRegion(t)
	// Nobody by that name: failed logins of a real account would lock it.
	wrongLogin := map[string]string{"login": "nobody@kita-clinic", "password": "not the password"}
	for _, tc := range []struct {
		name, accept string
		want         problemBody
	}{
		{"Japanese browser", "ja,en-US;q=0.9,en;q=0.8", problemBody{"Unauthorized", "ログイン名またはパスワードが違います。", "", 401}},
		{"the app in Japanese", "ja", problemBody{"Unauthorized", "ログイン名またはパスワードが違います。", "", 401}},
		{"the app in English", "en", problemBody{"Unauthorized", "the login name or the password is wrong", "", 401}},
		{"English preferred", "en-GB, ja;q=0.5", problemBody{"Unauthorized", "the login name or the password is wrong", "", 401}},
		{"Japanese by quality", "fr, en;q=0.3, ja-JP;q=0.8", problemBody{"Unauthorized", "ログイン名またはパスワードが違います。", "", 401}},
		{"no language asked", "", problemBody{"Unauthorized", "the login name or the password is wrong", "", 401}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &client{r: r}
			b, _ := json.Marshal(wrongLogin)
			hdr := []string{"Content-Type", "application/json"}
			if tc.accept != "" {
				hdr = append(hdr, "Accept-Language", tc.accept)
			}
			c.do("POST", "/api/login", bytes.NewReader(b), hdr...)
			if diff := cmp.Diff(tc.want, lastProblem(t, c)); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}

	// A logged-in user's language setting decides, from the next request on, whatever the browser says: P2 has
	// not consented.
	share := map[string]any{"patientId": "P2", "toInstitution": "chuo-hospital", "purpose": "referral"}
	b, _ := json.Marshal(share)
	doctor := r.as("kato@kita-clinic")
	doctor.do("POST", "/api/shares", bytes.NewReader(b), "Content-Type", "application/json", "Accept-Language", "en")
	p := lastProblem(t, doctor)
	if p.Status != 403 || p.Code != "consent-required" || p.Title != "Forbidden" || !japanese(p.Detail) {
		t.Errorf("a Japanese doctor sharing without consent: %+v", p)
	}
	if st := doctor.post("/api/me/lang", map[string]string{"lang": "en"}); st != 204 {
		t.Fatalf("set language: %d %s", st, doctor.body)
	}
	doctor.do("POST", "/api/shares", bytes.NewReader(b), "Content-Type", "application/json", "Accept-Language", "ja")
	p = lastProblem(t, doctor)
	if p.Status != 403 || p.Code != "consent-required" || p.Title != "Forbidden" || japanese(p.Detail) {
		t.Errorf("an English-speaking doctor sharing without consent: %+v", p)
	}

	// API clients get English unless they ask for Japanese.
	api := r.withToken(r.clinicWrite)
	api.post("/api/shares", share)
	en := lastProblem(t, api)
	api.do("POST", "/api/shares", bytes.NewReader(b), "Content-Type", "application/json", "Accept-Language", "ja")
	ja := lastProblem(t, api)
	if en.Status != 403 || japanese(en.Detail) || ja.Status != 403 || !japanese(ja.Detail) || en.Title != ja.Title || en.Code != ja.Code {
		t.Errorf("an API client: without Accept-Language %+v; with ja %+v", en, ja)
	}
}

// TestErrorsRecognisedBrowser: the app recognises the server's refusals by their code, not their wording, now that
// the wording follows the user's language: a locked account (in Japanese and in English) and a share of a patient
// whose consent is not recorded.
func TestErrorsRecognisedBrowser(t *testing.T) {
	r := newRegion(t)
	out := artifacts(t)
	ctx, cancel := browser(t)
	defer cancel()
	step := stepper(ctx, t, out)
	locked := r.users["suzuki@chuo-hospital"]
	until := r.clock.Now().Add(time.Hour)
	if err := r.db.UpdateUser(t.Context(), locked.pk, renkei.UserUpdate{LockedUntil: &until}, nil); err != nil {
		t.Fatal(err)
	}
	step("lang-01-locked-ja", chromedp.Navigate(r.srv.URL+"/"), chromedp.WaitVisible("#login-name"),
		chromedp.SendKeys("#login-name", locked.login), chromedp.SendKeys("#login-password", locked.password),
		chromedp.Click(`#login button[type="submit"]`), poll(`document.querySelector('#message').textContent.includes('まで使えません')`))
	// After #lang the login form is drawn again: typing before that lands in the old form's fields, which vanish
	// (a flake seen under load). The submit button's English label says the new one is there.
	englishForm := poll(`document.documentElement.lang === 'en' && document.querySelector('#login button[type="submit"]')?.textContent.trim() === 'Log in'`)
	step("lang-02-locked-en", chromedp.Click("#lang"), englishForm, chromedp.WaitVisible("#login-name"),
		chromedp.SendKeys("#login-name", locked.login), chromedp.SendKeys("#login-password", locked.password),
		chromedp.Click(`#login button[type="submit"]`), poll(`document.querySelector('#message').textContent.includes('is locked until')`),
		chromedp.Click("#lang"), chromedp.WaitVisible("#login-name"))

	// kato's clinic has no consent of P2 on record: the share dialog says so in the app's words.
	step("lang-03-login", r.loginSteps(r.users["kato@kita-clinic"]), chromedp.WaitVisible("#search"), chromedp.Click("#tour-skip"),
		chromedp.SendKeys("#q-id", "P2"), chromedp.Click("#search-submit"),
		chromedp.WaitVisible(fmt.Sprintf(`#studies tr[data-study="%s"] button.secondary`, r.p2.studyUID)))
	step("lang-04-share-no-consent", chromedp.Click(fmt.Sprintf(`#studies tr[data-study="%s"] button.secondary`, r.p2.studyUID)),
		chromedp.WaitVisible("#share"), chromedp.Click(`#share button[type="submit"]`),
		poll(`document.querySelector('#message').textContent.includes('同意書を記録してから共有してください')`))
}
