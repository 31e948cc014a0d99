package web_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/pquerna/otp/totp"

	"renkei"
)

// artifacts is where the browser tests leave their screenshots: RENKEI_ARTIFACTS, else test-artifacts/ at the
// repository's root (ignored by git), so that a failure can be looked at, not only read.
func artifacts(t *testing.T) string {
	dir := os.Getenv("RENKEI_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "test-artifacts")
	}
	dir = filepath.Join(dir, t.Name())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func screenshot(ctx context.Context, t *testing.T, dir, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
	if err != nil {
		t.Logf("screenshot %s: %v", name, err)
		return
	}
	os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644)
}

// TestWebApp drives the web app in Chromium as a hospital physician would: log in with password and authenticator
// code, find the clinic's referred patient by typing their name in katakana (stored in hiragana), see that the study
// is shared and by whom, open the patient's history, and switch the interface to English, which sticks.
func TestWebApp(t *testing.T) {
	r := newRegion(t)
	out := artifacts(t)
	body, ctype := r.stowBodyBorn("K1", "Kana^Taro=仮名^太郎=かな^たろう", "19600501", 700)
	if st := r.withToken(r.clinicWrite).do("POST", "/dicomweb/studies", body, "Content-Type", ctype); st != 200 {
		t.Fatalf("store: %d", st)
	}
	clinic := r.as("kato@kita-clinic")
	if st := clinic.post("/api/consents", map[string]any{"patientId": "K1", "scope": []string{"region"}, "method": "electronic", "signature": "同意します"}); st != 201 {
		t.Fatal(st)
	}
	if st := clinic.post("/api/shares", map[string]any{"patientId": "K1", "toInstitution": "chuo-hospital", "purpose": "referral", "reason": "胸部CT精査"}); st != 201 {
		t.Fatal(st)
	}
	// The browser's clock is the real one: give the region's clock back the present for the TOTP code.
	u := r.users["tanaka@chuo-hospital"]

	ctx, cancel := browser(t)
	defer cancel()
	step := func(name string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			screenshot(ctx, t, out, name+"-failed")
			t.Fatalf("%s: %v", name, err)
		}
		screenshot(ctx, t, out, name)
	}
	step("01-login", chromedp.Navigate(r.srv.URL+"/"), chromedp.WaitVisible("#login-name"),
		chromedp.SendKeys("#login-name", u.login), chromedp.SendKeys("#login-password", u.password), chromedp.Click(`#login button[type="submit"]`),
		chromedp.WaitVisible("#totp-code"))
	code, _ := totp.GenerateCode(u.totpKey, r.clock.Now())
	step("02-second-factor", chromedp.SendKeys("#totp-code", code), chromedp.Click(`#second button[type="submit"]`), chromedp.WaitVisible("#search"))
	step("03-search-katakana", chromedp.SendKeys("#q-name", "カナ"), chromedp.Click("#search-submit"), chromedp.WaitVisible("#studies tbody tr"))
	rows, err := chromedp.Run(ctx, chromedp.Text("#studies tbody"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"仮名 太郎", "(かな たろう)", "K1", "北町クリニック", "共有", "kato@kita-clinic", "紹介", "1960年5月1日"} {
		if !strings.Contains(rows, want) {
			t.Errorf("the study list does not show %q:\n%s", want, rows)
		}
	}
	if strings.Contains(rows, "P2") || strings.Contains(rows, "佐藤") {
		t.Errorf("the list shows a patient who was not shared:\n%s", rows)
	}
	step("04-patient", chromedp.Click(`#studies a[href^="#/patient/"]`), chromedp.WaitVisible("#timeline li"))
	timeline, _ := chromedp.Run(ctx, chromedp.Text("#timeline"))
	if !strings.Contains(timeline, "北町クリニック") {
		t.Errorf("the patient's timeline: %q", timeline)
	}
	step("05-english", chromedp.Click("#lang"), chromedp.WaitVisible("#nav"))
	nav, _ := chromedp.Run(ctx, chromedp.Text("#nav"))
	if !strings.Contains(nav, "Studies") || !strings.Contains(nav, "Shares") {
		t.Errorf("after the switch the menu reads %q", nav)
	}
	// Remembered for the user: a fresh browser profile would get it from the server; here a reload keeps it.
	step("06-reload", chromedp.Reload(), chromedp.WaitVisible("#nav a"))
	nav, _ = chromedp.Run(ctx, chromedp.Text("#nav"))
	if !strings.Contains(nav, "Studies") {
		t.Errorf("after a reload the menu reads %q", nav)
	}
	if got, _, err := r.db.UserByLogin(t.Context(), u.login); err != nil || got.Lang != "en" {
		t.Errorf("the language was not remembered for the user: %q %v", got.Lang, err)
	}
	step("07-logout", chromedp.Click("#logout"), chromedp.WaitVisible("#login-name"))
}

// TestViewer opens a hospital's own CT from the study list, waits for the whole stack, scrolls with the keyboard,
// applies the lung preset and checks that an image is drawn (not a black canvas) and the overlay says where it is.
func TestViewer(t *testing.T) {
	r := newRegion(t)
	out := artifacts(t)
	token, err := r.ids.CreateToken(t.Context(), renkei.System, &renkei.APIToken{Institution: r.hospital.PK, Name: "ct", Write: true})
	if err != nil {
		t.Fatal(err)
	}
	body, ctype := r.stowBody("H9", "Suzuki^Ichiro=鈴木^一郎", 800, 5)
	if st := r.withToken(token).do("POST", "/dicomweb/studies", body, "Content-Type", ctype); st != 200 {
		t.Fatalf("store: %d", st)
	}
	u := r.users["tanaka@chuo-hospital"]
	ctx, cancel := browser(t)
	defer cancel()
	step := func(name string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			screenshot(ctx, t, out, name+"-failed")
			t.Fatalf("%s: %v", name, err)
		}
		screenshot(ctx, t, out, name)
	}
	code, _ := totp.GenerateCode(u.totpKey, r.clock.Now())
	step("01-list", chromedp.Navigate(r.srv.URL+"/"), chromedp.WaitVisible("#login-name"), chromedp.SendKeys("#login-name", u.login),
		chromedp.SendKeys("#login-password", u.password), chromedp.Click(`#login button[type="submit"]`), chromedp.WaitVisible("#totp-code"),
		chromedp.SendKeys("#totp-code", code), chromedp.Click(`#second button[type="submit"]`), chromedp.WaitVisible("#studies a.view"))
	step("02-viewer", chromedp.Click("#studies a.view"), chromedp.WaitVisible(`#viewport[data-stack="loaded"]`))
	slice := func() string {
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('#viewport').dataset.slice`))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	first := slice()
	step("03-scroll", chromedp.Focus("#viewport"), chromedp.KeyEvent(kb.ArrowDown))
	if got := slice(); got == first {
		t.Errorf("ArrowDown did not move from slice %s", first)
	}
	step("04-lung", chromedp.Click(`button[data-preset="lung"]`))
	wl, _ := chromedp.Run(ctx, chromedp.Text("#wl"))
	if !strings.Contains(wl, "WL -600") || !strings.Contains(wl, "WW 1500") {
		t.Errorf("after the lung preset the overlay says %q", wl)
	}
	lit, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`(() => {
		const c = document.querySelector('#viewport'); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
		let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i] > 16) n++; return n / (d.length / 4); })()`))
	if err != nil || lit < 0.05 {
		t.Errorf("the canvas is (almost) black: %.3f of its pixels lit (%v)", lit, err)
	}
	overlay, _ := chromedp.Run(ctx, chromedp.Text("#overlay"))
	if !strings.Contains(overlay, "H9") || !strings.Contains(overlay, "/ 5") {
		t.Errorf("the overlay says %q", overlay)
	}
}
