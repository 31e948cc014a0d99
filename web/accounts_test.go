package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/pquerna/otp/totp"
)

// TestAdminAccounts is an institution admin looking after their clinic from the web app, not the server's shell:
// adding a nurse (whose one-time password then logs in), resetting a doctor who lost their phone (their sessions
// end), stopping and resuming an account, making and revoking a gateway's token. Others' accounts and tokens are
// out of reach, and nobody but an admin gets in.
func TestAdminAccounts(t *testing.T) {
	r := newRegion(t)
	ctx := context.Background()
	admin := r.as("admin@kita-clinic")
	doctor := r.as("kato@kita-clinic")

	if st := doctor.get("/api/admin/users"); st != 403 {
		t.Errorf("a physician lists the accounts: %d, want 403", st)
	}
	var users []struct {
		ID          int64
		Login, Role string
		Enrolled    bool
	}
	admin.getJSON("/api/admin/users", &users)
	idOf := map[string]int64{}
	for _, u := range users {
		idOf[u.Login] = u.ID
	}
	if _, ok := idOf["kato@kita-clinic"]; !ok || len(idOf) != 2 || idOf["tanaka@chuo-hospital"] != 0 {
		t.Fatalf("the clinic's admin lists %+v", users)
	}

	// A new nurse: the one-time password logs in, and must be changed.
	if st := admin.post("/api/admin/users", map[string]string{"login": "ito@kita-clinic", "name": "伊藤 花子", "role": "nurse"}); st != 201 {
		t.Fatalf("add a nurse: %d %s", st, admin.body)
	}
	var added struct {
		User            struct{ ID int64 }
		OneTimePassword string
	}
	json.Unmarshal(admin.body, &added)
	login, err := r.ids.Password(ctx, "ito@kita-clinic", added.OneTimePassword, "127.0.0.1")
	if err != nil || !login.MustChangePassword {
		t.Errorf("the nurse's first login with the one-time password: %+v %v", login, err)
	}
	for _, bad := range []map[string]string{
		{"login": "boss@kita-clinic", "name": "Boss", "role": "region-admin"},
		{"login": "pat@kita-clinic", "name": "Pat", "role": "patient"},
		{"login": "has space", "name": "X", "role": "nurse"},
		{"login": "kato@kita-clinic", "name": "again", "role": "nurse"},
	} {
		if st := admin.post("/api/admin/users", bad); st != 400 && st != 409 {
			t.Errorf("add %v: %d %s, want 400 or 409", bad, st, admin.body)
		}
	}

	// The doctor lost their phone: a reset gives a new one-time password and ends their sessions.
	if st := admin.post("/api/admin/users/"+strconv.FormatInt(idOf["kato@kita-clinic"], 10)+"/reset", map[string]any{}); st != 200 {
		t.Fatalf("reset: %d %s", st, admin.body)
	}
	var reset struct{ OneTimePassword string }
	json.Unmarshal(admin.body, &reset)
	if st := doctor.get("/api/me"); st != 401 {
		t.Errorf("the doctor's session after the reset: %d, want 401", st)
	}
	if l, err := r.ids.Password(ctx, "kato@kita-clinic", reset.OneTimePassword, "127.0.0.1"); err != nil || !l.MustChangePassword || !l.NeedsEnrolment {
		t.Errorf("login with the reset password: %+v %v (want a password change and a new second factor)", l, err)
	}

	// Stop the nurse's account, and resume it; not one's own.
	nurse := "/api/admin/users/" + strconv.FormatInt(added.User.ID, 10) + "/disable"
	if st := admin.post(nurse, map[string]bool{"disabled": true}); st != 200 {
		t.Fatalf("disable: %d %s", st, admin.body)
	}
	if _, err := r.ids.Password(ctx, "ito@kita-clinic", added.OneTimePassword, "127.0.0.1"); err == nil {
		t.Errorf("a stopped account logged in")
	}
	if st := admin.post(nurse, map[string]bool{"disabled": false}); st != 200 {
		t.Errorf("enable: %d %s", st, admin.body)
	}
	if st := admin.post("/api/admin/users/"+strconv.FormatInt(idOf["admin@kita-clinic"], 10)+"/disable", map[string]bool{"disabled": true}); st != 400 {
		t.Errorf("an admin stops their own account: %d, want 400", st)
	}

	// Another institution's account answers as one that does not exist.
	hospitalAdmin := r.as("admin@chuo-hospital")
	if st := hospitalAdmin.post("/api/admin/users/"+strconv.FormatInt(added.User.ID, 10)+"/reset", map[string]any{}); st != 404 {
		t.Errorf("the hospital's admin resets the clinic's nurse: %d, want 404", st)
	}

	// A token for the clinic's gateway: it works until revoked; the hospital cannot revoke it.
	if st := admin.post("/api/admin/tokens", map[string]any{"name": "CT室ゲートウェイ", "write": true}); st != 201 {
		t.Fatalf("token: %d %s", st, admin.body)
	}
	var tok struct {
		ID     int64
		Secret string
	}
	json.Unmarshal(admin.body, &tok)
	gw := r.withToken(tok.Secret)
	if st := gw.get("/dicomweb/studies"); st != 200 {
		t.Errorf("the new token reads: %d", st)
	}
	revoke := "/api/admin/tokens/" + strconv.FormatInt(tok.ID, 10) + "/revoke"
	if st := hospitalAdmin.post(revoke, map[string]any{}); st != 404 {
		t.Errorf("the hospital's admin revokes the clinic's token: %d, want 404", st)
	}
	if st := admin.post(revoke, map[string]any{}); st != 200 {
		t.Fatalf("revoke: %d %s", st, admin.body)
	}
	if st := gw.get("/dicomweb/studies"); st != 401 {
		t.Errorf("the revoked token: %d, want 401", st)
	}
	var events []struct{ Detail string }
	admin.getJSON("/api/audit?limit=50", &events)
	var details []string
	for _, e := range events {
		details = append(details, e.Detail)
	}
	all := strings.Join(details, "\n")
	for _, want := range []string{"created user ito@kita-clinic", "reset password and second factor", "disabled the account ito@kita-clinic", "created read-write API token", "revoked API token"} {
		if !strings.Contains(all, want) {
			t.Errorf("the audit trail has no %q:\n%s", want, all)
		}
	}
}

// TestAdminAccountsBrowser: the clinic's admin adds a clerk and makes a gateway token on the admin page; each secret
// is shown once, and the token is revoked again from its row.
func TestAdminAccountsBrowser(t *testing.T) {
	r := newRegion(t)
	out := artifacts(t)
	ctx, cancel := browser(t)
	defer cancel()
	step := stepper(ctx, t, out)
	// A hospital physician opened the clinic's patient by break-glass: the admin's review queue lists it under headings.
	body, ctype := r.stowBodyBorn("P9", "Yamada^Taro=山田^太郎=ヤマダ^タロウ", "19450312", 90)
	if st := r.withToken(r.clinicWrite).do("POST", "/dicomweb/studies", body, "Content-Type", ctype); st != 200 {
		t.Fatalf("store: %d", st)
	}
	if st := r.as("tanaka@chuo-hospital").post("/api/break-glass", map[string]string{"birthDate": "19450312", "name": "山田太郎", "reason": "救急搬送、意識障害"}); st != 201 {
		t.Fatalf("break-glass: %d", st)
	}
	// In English the physician's institution is named in English (when it has an English name).
	r.hospital.NameEn = "Chuo Hospital"
	if err := r.db.PutInstitution(context.Background(), &r.hospital, nil); err != nil {
		t.Fatal(err)
	}
	doctor := r.as("kato@kita-clinic") // a colleague of the admin, who reads renkei in English
	if st := doctor.post("/api/me/lang", map[string]string{"lang": "en"}); st != 204 {
		t.Fatalf("language: %d %s", st, doctor.body)
	}
	if st := doctor.get("/api/shares"); st != 200 || !strings.Contains(string(doctor.body), "tanaka@chuo-hospital(Chuo Hospital)") ||
		!strings.Contains(string(doctor.body), `"patientName":"Yamada^Taro=山田^太郎=ヤマダ^タロウ"`) {
		t.Errorf("the shares in English: %d %s", st, doctor.body)
	}
	step("acct-01-admin", r.loginSteps(r.users["admin@kita-clinic"]), chromedp.WaitVisible("#search"), hashRoute("#/admin"),
		chromedp.WaitVisible("#account-list"))
	// The audit trail's outcome and the kind of actor (the clinic's gateway token stored the studies) are in the
	// page's language, not the stored "success" and "token".
	if audit, _ := liveText(ctx, "#audit tbody"); !strings.Contains(audit, "成功") || strings.Contains(audit, "success") ||
		!strings.Contains(audit, "APIトークン") {
		t.Errorf("the audit table's outcomes: %q", audit)
	}
	if heads, _ := liveText(ctx, "#reviews"); !strings.Contains(heads, "理由") || !strings.Contains(heads, "誰が") || !strings.Contains(heads, "救急搬送") {
		t.Errorf("the break-glass review queue reads %q", heads)
	}
	// The clinic's shares name the physician the break-glass let in, not "user 3".
	step("acct-01b-shares", hashRoute("#/shares"), chromedp.WaitVisible("table.shares-out tr.breakglass"))
	if row, _ := liveText(ctx, "table.shares-out tr.breakglass"); !strings.Contains(row, "tanaka@chuo-hospital(中央病院)") || !strings.Contains(row, "山田 太郎") {
		t.Errorf("the break-glass share's row reads %q", row)
	}
	step("acct-01c-admin", hashRoute("#/admin"), chromedp.WaitVisible("#account-list"))
	step("acct-02-added", chromedp.Click("#accounts details summary"), chromedp.SendKeys("#acct-name", "佐々木 明美"),
		chromedp.SendKeys("#acct-login", "sasaki@kita-clinic"), chromedp.SetValue("#acct-role", "clerk"), chromedp.Click("#acct-add"),
		chromedp.WaitVisible("#new-secret"), chromedp.WaitVisible(`#account-list tr[data-login="sasaki@kita-clinic"]`))
	pw, _ := liveText(ctx, "#new-secret .secret-value")
	if l, err := r.ids.Password(context.Background(), "sasaki@kita-clinic", strings.TrimSpace(pw), "127.0.0.1"); err != nil || !l.MustChangePassword {
		t.Errorf("the one-time password shown (%q) does not log the clerk in: %v", pw, err)
	}
	row, _ := liveText(ctx, `#account-list tr[data-login="sasaki@kita-clinic"]`)
	if !strings.Contains(row, "初回ログイン待ち") {
		t.Errorf("the new clerk's row says %q", row)
	}
	step("acct-03-token", chromedp.SendKeys("#tok-name", "CT室ゲートウェイ"), chromedp.Click("#tok-write"), chromedp.Click("#tok-add"),
		chromedp.WaitVisible("#token-secret"))
	secret, _ := liveText(ctx, "#token-secret .secret-value")
	if st := r.withToken(strings.TrimSpace(secret)).get("/dicomweb/studies"); st != 200 {
		t.Errorf("the token shown (%.6q…) does not read: %d", secret, st)
	}
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(window.confirm = () => true, true)`)); err != nil {
		t.Fatal(err)
	}
	step("acct-04-revoked", chromedp.Click(`#token-list tr[data-token="CT室ゲートウェイ"] button.revoke`),
		poll(`(document.querySelector('#token-list tr[data-token="CT室ゲートウェイ"]') || {}).className === 'disabled'`))
	if st := r.withToken(strings.TrimSpace(secret)).get("/dicomweb/studies"); st != 401 {
		t.Errorf("the revoked token: %d, want 401", st)
	}

	// The new clerk's first login: the one-time password, an authenticator app, the recovery codes, then a password
	// of her own, whose refusals are said in Japanese with the cursor back in the new password.
	step("acct-05-first-login", chromedp.Click("#logout"), chromedp.WaitVisible("#login-name"), chromedp.SendKeys("#login-name", "sasaki@kita-clinic"),
		chromedp.SendKeys("#login-password", strings.TrimSpace(pw)), chromedp.Click(`#login button[type="submit"]`), chromedp.WaitVisible("#enrol-app"),
		chromedp.Click("#enrol-app"), chromedp.WaitVisible("#totp-secret"))
	key, _ := liveText(ctx, "#totp-secret")
	code, _ := totp.GenerateCode(strings.TrimSpace(key), r.clock.Now())
	step("acct-06-enrolled", chromedp.SendKeys("#enrol-code", code), chromedp.Click(`#enrol-totp button[type="submit"]`), chromedp.WaitVisible("#codes-done"),
		chromedp.Click("#codes-done"), chromedp.WaitVisible("#pw-current"), poll(`document.activeElement.id === 'pw-current'`))
	for _, c := range []struct{ password, says string }{{"sasaki-kita-2026", "ログイン名や氏名を含まない"}, {"password1234", "よく使われていて"}} {
		step("acct-07-refused", poll(`(document.querySelectorAll('#password input').forEach((i) => { i.value = ''; }), true)`),
			chromedp.SendKeys("#pw-current", strings.TrimSpace(pw)), chromedp.SendKeys("#pw-new", c.password), chromedp.SendKeys("#pw-again", c.password),
			chromedp.Click(`#password button[type="submit"]`), poll(fmt.Sprintf(`document.querySelector('#message').textContent.includes(%q)`, c.says)),
			poll(`document.activeElement.id === 'pw-new'`))
	}
	step("acct-08-own-password", poll(`(document.querySelectorAll('#password input').forEach((i) => { i.value = ''; }), true)`),
		chromedp.SendKeys("#pw-current", strings.TrimSpace(pw)), chromedp.SendKeys("#pw-new", "aozora bunko 2026"), chromedp.SendKeys("#pw-again", "aozora bunko 2026"),
		chromedp.Click(`#password button[type="submit"]`), chromedp.WaitVisible("#search"))
}
