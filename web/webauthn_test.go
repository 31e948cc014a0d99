package web_test

import (
	"context"
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdpwebauthn "github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"

	"renkei"
)

// ceremonyPage is the browser's half of a login with a security key, as the web app will do it: the JSON API, the
// WebAuthn JSON helpers of the browser, and navigator.credentials.
const ceremonyPage = `<!doctype html><meta charset="utf-8"><title>renkei WebAuthn test</title><script>
let csrf = '';
async function api(path, body, raw) {
  const r = await fetch(path, {method: 'POST', headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrf},
    body: raw ? body : JSON.stringify(body || {})});
  const t = await r.text();
  if (!r.ok) throw new Error(path + ' ' + r.status + ' ' + t);
  return t ? JSON.parse(t) : {};
}
async function password(login, pw) { const st = await api('/api/login', {login: login, password: pw}); csrf = st.csrfToken; return st; }
async function register(name) {
  const opts = await api('/api/login/webauthn/register/start');
  const cred = await navigator.credentials.create({publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(opts.publicKey)});
  const res = await api('/api/login/webauthn/register/finish?name=' + encodeURIComponent(name), JSON.stringify(cred.toJSON()), true);
  csrf = res.login.csrfToken;
  return res;
}
async function key() {
  const opts = await api('/api/login/webauthn/start');
  const cred = await navigator.credentials.get({publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(opts.publicKey)});
  const st = await api('/api/login/webauthn/finish', JSON.stringify(cred.toJSON()), true);
  csrf = st.csrfToken;
  return st;
}
async function studies() { const r = await fetch('/dicomweb/studies'); return r.status; }
async function logout() { await api('/api/logout'); }
</script>`

// browser starts headless Chromium (Debian's chromium, which scripts/setup installs) with a virtual CTAP2
// authenticator: Chromium's own WebAuthn implementation, with the key held in software instead of a USB device.
func browser(t *testing.T, extra ...chromedp.ExecAllocatorOption) (context.Context, func()) {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium is missing: scripts/setup installs it")
		}
		t.Skip("chromium is missing: run scripts/setup")
	}
	opts := []chromedp.ExecAllocatorOption{chromedp.ExecPath(path), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true)}
	opts = append(opts, extra...)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	// Generous: on a loaded 2-core machine (CI runs the packages side by side) a browser test can take a minute.
	ctx, cancelTimeout := context.WithTimeout(ctx, 180*time.Second)
	return ctx, func() { cancelTimeout(); cancelCtx(); cancelAlloc() }
}

// js evaluates expr in the page, waiting for its promise, into out.
func js[T any](ctx context.Context, t *testing.T, expr string, out *T) error {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err == nil && out != nil {
		*out = v
	}
	return err
}

// devtools sends one DevTools protocol command to the page.
func devtools[P, R any](ctx context.Context, c cdp.Command[P, R], p P) (R, error) {
	return chromedp.Run(ctx, func(ctx context.Context, t *chromedp.Target) (R, error) { return cdp.Call(ctx, t, c, p) })
}

var virtualKey = &cdpwebauthn.VirtualAuthenticatorOptions{Protocol: cdpwebauthn.AuthenticatorProtocolCtap2,
	Transport: cdpwebauthn.AuthenticatorTransportUsb, HasResidentKey: true, HasUserVerification: true, IsUserVerified: true,
	AutomaticPresenceSimulation: true}

// TestWebAuthn: a nurse on a ward without phones enrols a security key at her first login (instead of an
// authenticator app), logs in with it later, and a wrong key does not let anyone in.
func TestWebAuthn(t *testing.T) {
	r := newRegion(t)
	u, _ := url.Parse(r.srv.URL)
	origin := "http://localhost:" + u.Port() // WebAuthn needs a host name, not an IP address
	if err := r.ids.EnableWebAuthn("localhost", "renkei test", []string{origin}); err != nil {
		t.Fatal(err)
	}
	r.pages["/test/webauthn.html"] = ceremonyPage
	nurse := renkei.User{Login: "sato@chuo-hospital", Name: "佐藤", Institution: r.hospital, Role: renkei.Nurse}
	otp, err := r.ids.CreateUser(t.Context(), renkei.System, &nurse)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := browser(t)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(origin+"/test/webauthn.html")); err != nil {
		t.Fatalf("browser: %v", err)
	}
	if _, err := devtools(ctx, cdpwebauthn.Enable, cdpwebauthn.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	added, err := devtools(ctx, cdpwebauthn.AddVirtualAuthenticator, cdpwebauthn.AddVirtualAuthenticatorParams{Options: virtualKey})
	if err != nil {
		t.Fatal(err)
	}

	// First login: one-time password, then a security key instead of an app.
	var st map[string]any
	if err := js(ctx, t, `password(`+quote(nurse.Login)+`, `+quote(otp)+`)`, &st); err != nil || st["next"] != "enrol-second-factor" {
		t.Fatalf("password step: %v %v", st, err)
	}
	var reg struct {
		Login         map[string]any
		RecoveryCodes []string
	}
	if err := js(ctx, t, `register("病棟の鍵")`, &reg); err != nil {
		t.Fatalf("register a security key: %v", err)
	}
	if reg.Login["next"] != "change-password" || len(reg.RecoveryCodes) != 10 {
		t.Errorf("after registering the key: %v, %d recovery codes", reg.Login, len(reg.RecoveryCodes))
	}
	if err := js(ctx, t, `api('/api/password', {current: `+quote(otp)+`, new: 'shiroi yuki 2026'})`, &st); err != nil {
		t.Fatalf("password change: %v", err)
	}
	var status int
	if err := js(ctx, t, `studies()`, &status); err != nil || status != 200 {
		t.Errorf("DICOMweb after the first login: %d %v", status, err)
	}
	if err := js[any](ctx, t, `logout()`, nil); err != nil {
		t.Fatal(err)
	}

	// A later login: password, then the key.
	if err := js(ctx, t, `password(`+quote(nurse.Login)+`, 'shiroi yuki 2026')`, &st); err != nil || st["next"] != "second-factor" {
		t.Fatalf("password step: %v %v", st, err)
	}
	if f, _ := json.Marshal(st["factors"]); !strings.Contains(string(f), "webauthn") {
		t.Errorf("the second step does not offer the key: %s", f)
	}
	if err := js(ctx, t, `studies()`, &status); err != nil || status != 403 {
		t.Errorf("DICOMweb between the steps: %d %v", status, err)
	}
	if err := js(ctx, t, `key()`, &st); err != nil || st["next"] != "done" {
		t.Fatalf("login with the key: %v %v", st, err)
	}
	if err := js(ctx, t, `studies()`, &status); err != nil || status != 200 {
		t.Errorf("DICOMweb after the key: %d %v", status, err)
	}
	if err := js[any](ctx, t, `logout()`, nil); err != nil {
		t.Fatal(err)
	}

	// An answer whose signature does not verify (a forged or damaged key) is refused by the server.
	bogus := true
	if _, err := devtools(ctx, cdpwebauthn.SetResponseOverrideBits, cdpwebauthn.SetResponseOverrideBitsParams{AuthenticatorID: added.AuthenticatorID,
		IsBogusSignature: &bogus}); err != nil {
		t.Fatal(err)
	}
	if err := js(ctx, t, `password(`+quote(nurse.Login)+`, 'shiroi yuki 2026')`, &st); err != nil {
		t.Fatal(err)
	}
	if err := js(ctx, t, `key()`, &st); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("a bad signature: %v %v, want the server's 401", st, err)
	}
	if err := js(ctx, t, `studies()`, &status); err != nil || status != 403 {
		t.Errorf("DICOMweb after a refused key: %d %v", status, err)
	}
	events := r.events(0)
	var registered, refused bool
	for _, e := range events {
		if e.Actor == nurse.Login && strings.Contains(e.Detail, "registered a security key") {
			registered = true
		}
		if e.Actor == nurse.Login && e.Action == renkei.ActionLogin && e.Outcome == renkei.OutcomeFailure && strings.Contains(e.Detail, "security key") {
			refused = true
		}
	}
	if !registered || !refused {
		t.Errorf("the audit trail lacks the key's registration (%v) or the refused answer (%v)", registered, refused)
	}
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
