package web_test

import (
	"archive/zip"
	"bytes"
	"context"
	"fmt"
	"mime/multipart"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/pquerna/otp/totp"

	"renkei"
	"renkei/internal/dicomtest"
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

// runStep runs one named step of a browser test: its actions get at most a minute together, and a failing step leaves
// a screenshot, names the action that failed and logs the page's address and text, so that a failure on a CI machine
// explains itself. A passing step leaves its screenshot too.
func runStep(ctx context.Context, t *testing.T, out, name string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx); err != nil { // the browser starts with the test's context, not the step's
		t.Fatalf("%s: the browser did not start: %v", name, err)
	}
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for i, a := range actions {
		if err := chromedp.Do(sctx, a); err != nil {
			screenshot(ctx, t, out, name+"-failed")
			page, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`location.hash + "\n" + document.body.innerText.slice(0, 2000)`))
			t.Fatalf("%s: action %d of %d: %v\npage %s\nserver goroutines:\n%s", name, i+1, len(actions), err, page, serverStacks())
		}
	}
	screenshot(ctx, t, out, name)
}

// serverStacks are the stacks of this process's goroutines that are in renkei's own code (the test server runs in
// the test's process), for a step that hung: a deadlock or a slow query shows here.
func serverStacks() string {
	var b strings.Builder
	buf := make([]byte, 1<<22)
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, "renkei/") && !strings.Contains(g, "renkei/web_test.") {
			b.WriteString(g + "\n\n")
		}
	}
	return b.String()
}

// liveText reads an element's text in one step in the page (waiting up to 10 s for it to exist), so that a page that
// redraws itself on a live update between finding the node and reading it does not fail the read.
func liveText(ctx context.Context, sel string) (string, error) {
	return chromedp.Run(ctx, chromedp.Poll[string](fmt.Sprintf(`(() => { const e = document.querySelector(%s); return e ? e.innerText : null })()`, quote(sel)),
		chromedp.WithPollingTimeout(10*time.Second)))
}

// stepper is runStep bound to a test's browser and screenshot folder.
func stepper(ctx context.Context, t *testing.T, out string) func(name string, actions ...chromedp.Action[chromedp.Void]) {
	return func(name string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		runStep(ctx, t, out, name, actions...)
	}
}

// TestWebApp drives the web app in Chromium as a hospital physician would: log in with password and authenticator
// code, find the clinic's referred patient by typing their name in katakana (stored in hiragana), see that the study
// is shared, by whom and why, open the patient's history, and switch the interface to English, which sticks.
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
	step := stepper(ctx, t, out)
	// A mistyped password and a wrong code are said in Japanese (the app's own words, chosen by status), with the cursor
	// back in the field to type again and the login name kept.
	step("01-login-wrong", chromedp.Navigate(r.srv.URL+"/"), chromedp.WaitVisible("#login-name"),
		chromedp.SendKeys("#login-name", u.login), chromedp.SendKeys("#login-password", "not-the-password"), chromedp.Click(`#login button[type="submit"]`),
		poll(`document.querySelector('#message').textContent.includes('パスワードが違います')`),
		poll(`document.activeElement.id === 'login-password' && document.querySelector('#login-name').value !== ''`))
	// The code's field has the cursor: the doctor types the six digits at once.
	step("01-login", poll(`(document.querySelector('#login-password').value = '', true)`), chromedp.SendKeys("#login-password", u.password), chromedp.Click(`#login button[type="submit"]`),
		chromedp.WaitVisible("#totp-code"), poll(`document.activeElement.id === 'totp-code'`))
	code, _ := totp.GenerateCode(u.totpKey, r.clock.Now())
	wrong := code[:5] + string('0'+(code[5]-'0'+1)%10)
	step("02-wrong-code", chromedp.SendKeys("#totp-code", wrong), chromedp.Click(`#second button[type="submit"]`),
		poll(`document.querySelector('#message').textContent.includes('認証アプリに表示されている新しい数字')`),
		poll(`document.activeElement.id === 'totp-code'`))
	step("02-second-factor", poll(`(document.querySelector('#totp-code').value = '', true)`), chromedp.SendKeys("#totp-code", code), chromedp.Click(`#second button[type="submit"]`), chromedp.WaitVisible("#search"))
	// Once the first tour is closed, the list shows no trace of it (it once printed "null" under the title).
	step("02b-tour-closed", chromedp.Click("#tour-skip"), chromedp.WaitNotPresent("#tour"))
	step("03-search-katakana", chromedp.SendKeys("#q-name", "カナ"), chromedp.Click("#search-submit"), chromedp.WaitVisible("#studies tbody tr"))
	if null, _ := chromedp.Run(ctx, chromedp.Evaluate[bool](`[...document.querySelector('#app').childNodes].some((n) => n.nodeType === 3 && n.textContent.includes('null'))`)); null {
		t.Errorf("the study list prints null where the closed tour was")
	}
	rows, err := chromedp.Run(ctx, chromedp.Text("#studies tbody"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"仮名 太郎", "(かな たろう)", "K1", "北町クリニック", "共有", "kato@kita-clinic", "紹介", "胸部CT精査", "1960年5月1日"} {
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
	// Each study of the history opens in the viewer from there.
	step("04b-patient-viewer", chromedp.Click(`#timeline a[href^="#/viewer/"]`), chromedp.WaitVisible("canvas"),
		poll(`(history.back(), true)`), chromedp.WaitVisible("#timeline li"))
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
	// The user's name opens their security keys; a lost one is removed there (the browser's confirm answered yes).
	uu, _, err := r.db.UserByLogin(t.Context(), u.login)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"ward key", "lost key"} {
		if err := r.db.AddWebAuthnCredential(t.Context(), &renkei.WebAuthnCredential{ID: []byte(k), User: uu.PK, Name: k, Record: []byte(`{}`)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	step("07-account", chromedp.Click("#user"), chromedp.WaitVisible(`#keys tr[data-key="lost key"]`))
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(window.confirm = () => true, true)`)); err != nil {
		t.Fatal(err)
	}
	step("08-remove-key", chromedp.Click(`#keys tr[data-key="lost key"] .remove-key`), chromedp.WaitNotPresent(`#keys tr[data-key="lost key"]`))
	page, _ := chromedp.Run(ctx, chromedp.Text("body"))
	if !strings.Contains(page, `"lost key" was removed`) || !strings.Contains(page, "ward key") {
		t.Errorf("the account page after removing a key:\n%s", page)
	}
	if keys, _ := r.db.WebAuthnCredentials(t.Context(), uu.PK); len(keys) != 1 || keys[0].Name != "ward key" {
		t.Errorf("keys after the removal: %+v", keys)
	}
	step("09-logout", chromedp.Click("#logout"), chromedp.WaitVisible("#login-name"), poll(`document.activeElement.id === 'login-name'`))
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
	step := stepper(ctx, t, out)
	step("01-list", r.loginSteps(u), chromedp.WaitVisible("#studies a.view"))
	// A new study arrives while the list is open: it appears, marked, without a reload.
	r.stow(token, "H10", "Takeda^Jiro=竹田^次郎", 801, 1)
	step("01b-live", chromedp.WaitVisible(`#studies tr.new`))
	step("02-viewer", chromedp.Click(`#studies tr:not(.new) a.view`), chromedp.WaitVisible(`#viewport[data-stack="loaded"]`))
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

	// A known distance: 10 pixels across at PixelSpacing 0.7 mm is 7.0 mm.
	step("05-length", chromedp.Click(`button[data-tool="length"]`))
	dragImage(ctx, t, [2]float64{2.5, 3.5}, [2]float64{12.5, 3.5})
	// An ellipse inside the body: its mean is in HU (the CT's rescale applied) and its area in mm².
	step("06-roi", chromedp.Click(`button[data-tool="roi"]`))
	dragImage(ctx, t, [2]float64{5, 5}, [2]float64{11, 11})
	screenshot(ctx, t, out, "07-measured")
	m, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('#viewport').dataset.measurements`))
	if err != nil || !strings.Contains(m, `"7.0 mm"`) || !strings.Contains(m, "HU SD") || !strings.Contains(m, "mm²") {
		t.Errorf("measurements %s (%v), want a 7.0 mm length and an ROI in HU", m, err)
	}
	// Orientation markers of an axial slice (top, right, bottom, left), then turned with the image.
	markers := func() string {
		s, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('#viewport').dataset.markers`))
		return s
	}
	if got := markers(); got != "A L P R" {
		t.Errorf("axial markers %q, want A L P R", got)
	}
	step("08-rotated", chromedp.Click("#rotate"))
	if got := markers(); got != "R A L P" {
		t.Errorf("after a quarter turn the markers are %q, want R A L P", got)
	}
	step("09-flipped", chromedp.Click("#reset"), chromedp.Click("#flip"))
	if got := markers(); got != "A R P L" {
		t.Errorf("flipped left-right the markers are %q, want A R P L", got)
	}
}

// dragImage drags the mouse on the viewer's canvas between two points given in image pixels, as a hand would.
func dragImage(ctx context.Context, t *testing.T, from, to [2]float64) {
	t.Helper()
	at := func(p [2]float64) (float64, float64) {
		xy, err := chromedp.Run(ctx, chromedp.Evaluate[[]float64](fmt.Sprintf(`(() => { const c = document.querySelector('#viewport');
			const v = JSON.parse(c.dataset.view); const r = c.getBoundingClientRect();
			return [r.left + v.ox + %f * v.scale, r.top + v.oy + %f * v.scale]; })()`, p[0], p[1])))
		if err != nil {
			t.Fatal(err)
		}
		return xy[0], xy[1]
	}
	x1, y1 := at(from)
	x2, y2 := at(to)
	for _, ev := range []input.DispatchMouseEventParams{
		{Type: input.DispatchMouseEventTypeMouseMoved, X: x1, Y: y1},
		{Type: input.DispatchMouseEventTypeMousePressed, X: x1, Y: y1, Button: input.MouseButtonLeft, Buttons: 1, ClickCount: 1},
		{Type: input.DispatchMouseEventTypeMouseMoved, X: (x1 + x2) / 2, Y: (y1 + y2) / 2, Button: input.MouseButtonLeft, Buttons: 1},
		{Type: input.DispatchMouseEventTypeMouseMoved, X: x2, Y: y2, Button: input.MouseButtonLeft, Buttons: 1},
		{Type: input.DispatchMouseEventTypeMouseReleased, X: x2, Y: y2, Button: input.MouseButtonLeft, ClickCount: 1},
	} {
		if _, err := devtools(ctx, input.DispatchMouseEvent, ev); err != nil {
			t.Fatal(err)
		}
	}
}

// cdrom writes a folder laid out like a referral CD-ROM: a DICOMDIR made by dcmtk's dcmgpdir over three CT images,
// a fourth image the DICOMDIR does not list (still to be found), and the viewer program's files that are no images.
func cdrom(t *testing.T, dir string) []string {
	t.Helper()
	if _, err := exec.LookPath("dcmgpdir"); err != nil {
		t.Skip("dcmgpdir is missing: scripts/setup installs dcmtk")
	}
	if err := os.MkdirAll(filepath.Join(dir, "DICOM"), 0o755); err != nil {
		t.Fatal(err)
	}
	var paths []string
	for i := 1; i <= 4; i++ {
		p := filepath.Join(dir, "DICOM", fmt.Sprintf("IM%06d", i))
		if err := dicomtest.CT(p, dicomtest.CTOptions{PatientID: "CD01", PatientName: "Yamada^Hanako=山田^花子=ヤマダ^ハナコ", Rows: 16, Cols: 16,
			InstanceNumber: i, Seed: 900}); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	cmd := exec.Command("dcmgpdir", "+I", "+id", dir, paths[0][len(dir)+1:], paths[1][len(dir)+1:], paths[2][len(dir)+1:])
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dcmgpdir: %v\n%s", err, out)
	}
	os.WriteFile(filepath.Join(dir, "AUTORUN.INF"), []byte("[autorun]\nopen=VIEWER.EXE\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "README.TXT"), []byte("Viewer for Windows\n"), 0o644)
	return append(paths, filepath.Join(dir, "DICOMDIR"), filepath.Join(dir, "AUTORUN.INF"), filepath.Join(dir, "README.TXT"))
}

// hostileZip writes a zip with one good image and the entries a safe import must refuse.
func hostileZip(t *testing.T, path string, good []byte) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	zw := zip.NewWriter(f)
	add := func(h *zip.FileHeader, body []byte) {
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(body)
	}
	add(&zip.FileHeader{Name: "study/IM0001.dcm", Method: zip.Deflate}, good)
	add(&zip.FileHeader{Name: "../../etc/evil.dcm", Method: zip.Deflate}, good)
	link := &zip.FileHeader{Name: "link.dcm", Method: zip.Store}
	link.SetMode(os.ModeSymlink | 0o777)
	add(link, []byte("/etc/passwd"))
	add(&zip.FileHeader{Name: "bomb.dcm", Method: zip.Deflate}, make([]byte, 50<<20)) // 50 MB of zeros: ~50 KB deflated
	add(&zip.FileHeader{Name: "notes.txt", Method: zip.Deflate}, []byte("紹介状は別送します"))
	add(&zip.FileHeader{Name: "cut.dcm", Method: zip.Deflate}, good[:600])
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

// TestUpload imports a CD-ROM folder and a zip through the web app, as a clinic's clerk would: a progress bar, and
// per file what was stored, what was already there and what was refused and why; nothing refused is stored.
func TestUpload(t *testing.T) {
	r := newRegion(t)
	out := artifacts(t)
	cd := cdrom(t, filepath.Join(r.dir, "CDROM")) // chosen as a folder, as a clerk chooses the CD drive
	good, _ := os.ReadFile(cd[0])
	zipPath := filepath.Join(r.dir, "referral.zip")
	hostileZip(t, zipPath, good)
	u := r.users["kato@kita-clinic"]
	ctx, cancel := browser(t)
	defer cancel()
	step := stepper(ctx, t, out)
	step("01-login", r.loginSteps(u), chromedp.WaitVisible("#search"))
	r.clock.Advance(30 * time.Second) // the browser used this step's code; the test's own logins need the next
	step("02-folder", hashRoute("#/upload"), chromedp.WaitReady("#upload-folder"),
		chromedp.SetUploadFiles("#upload-folder", []string{filepath.Join(r.dir, "CDROM")}), chromedp.WaitReady(`#app[data-finished="true"]`))
	results, _ := chromedp.Run(ctx, chromedp.Text("#upload-results tbody"))
	summary, _ := chromedp.Run(ctx, chromedp.Text("#upload-summary"))
	if !strings.Contains(summary, "保存 4件") || !strings.Contains(summary, "取り込めず 3件") {
		t.Errorf("the CD-ROM import: %q\n%s", summary, results)
	}
	for _, want := range []string{"CDの目次ファイル", "DICOM画像ではありません"} {
		if !strings.Contains(results, want) {
			t.Errorf("the results do not say %q:\n%s", want, results)
		}
	}
	var list []map[string]any
	r.as("kato@kita-clinic").getJSON("/api/studies?patientId=CD01", &list)
	if len(list) != 1 || int(list[0]["numberOfInstances"].(float64)) != 4 {
		t.Errorf("after the CD-ROM import the clinic has %v", list)
	}
	// A disc that cannot be read to the end: an image its DICOMDIR lists is missing, and the import says so.
	os.Remove(cd[1])
	step("02b-unreadable", hashRoute("#/studies"), chromedp.WaitVisible("#search"), hashRoute("#/upload"), chromedp.WaitReady("#upload-folder"),
		chromedp.SetUploadFiles("#upload-folder", []string{filepath.Join(r.dir, "CDROM")}), chromedp.WaitReady(`#app[data-finished="true"]`))
	results, _ = chromedp.Run(ctx, chromedp.Text("#upload-results tbody"))
	if !strings.Contains(results, "IM000002") || !strings.Contains(results, "CDの目次にあるのに見つかりません") {
		t.Errorf("the missing image is not reported:\n%s", results)
	}

	// The zip: the good image was already stored (from the CD), the rest refused for its own reason.
	step("03-zip", hashRoute("#/studies"), chromedp.WaitVisible("#search"), hashRoute("#/upload"), chromedp.WaitReady("#upload-files"),
		chromedp.SetUploadFiles("#upload-files", []string{zipPath}), chromedp.WaitReady(`#app[data-finished="true"]`))
	results, _ = chromedp.Run(ctx, chromedp.Text("#upload-results tbody"))
	for _, want := range []string{"すでに保存されています", "zipの中の場所が不正です", "zipの中のリンクは開きません", "異常に大きくなるzip",
		"DICOM画像ではありません", "途中で切れています"} {
		if !strings.Contains(results, want) {
			t.Errorf("the zip results do not say %q:\n%s", want, results)
		}
	}
	if strings.Contains(results, "保存しました") {
		t.Errorf("something of the hostile zip was stored:\n%s", results)
	}
	r.as("kato@kita-clinic").getJSON("/api/studies?patientId=CD01", &list)
	if len(list) != 1 || int(list[0]["numberOfInstances"].(float64)) != 4 {
		t.Errorf("after the zip the clinic has %v", list)
	}
}

// hashRoute moves the app to a route within the page (a same-document navigation, which chromedp.Navigate would
// wait on for a load event that never comes).
func hashRoute(hash string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := chromedp.Evaluate[any](`location.hash = `+quote(hash))(ctx, t)
		return chromedp.Void{}, err
	}
}

// TestCine opens a 10-frame instance (an ultrasound or angiography run is one instance of many frames): frames step
// with the keys and play as cine.
func TestCine(t *testing.T) {
	r := newRegion(t)
	out := artifacts(t)
	token, err := r.ids.CreateToken(t.Context(), renkei.System, &renkei.APIToken{Institution: r.hospital.PK, Name: "us", Write: true})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(r.dir, "mf.dcm")
	if err := dicomtest.MultiFrame(path, dicomtest.CTOptions{PatientID: "MF1", PatientName: "Cine^Test", Rows: 32, Cols: 32, Frames: 10, Seed: 77}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	pw, _ := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/dicom"}})
	pw.Write(b)
	mw.Close()
	c := r.withToken(token)
	if st := c.do("POST", "/dicomweb/studies", &body, "Content-Type", `multipart/related; type="application/dicom"; boundary=`+mw.Boundary()); st != 200 {
		t.Fatalf("store: %d %s", st, c.body)
	}
	u := r.users["tanaka@chuo-hospital"]
	ctx, cancel := browser(t)
	defer cancel()
	if err := chromedp.Do(ctx, r.loginSteps(u), chromedp.WaitVisible("#studies a.view"),
		chromedp.Click("#studies a.view"), chromedp.WaitVisible(`#viewport[data-stack="loaded"]`)); err != nil {
		screenshot(ctx, t, out, "failed")
		t.Fatal(err)
	}
	overlay := func() string { s, _ := chromedp.Run(ctx, chromedp.Text("#overlay")); return s }
	if !strings.Contains(overlay(), "1 / 10") {
		t.Errorf("a multi-frame instance opens at its first frame of ten: %q", overlay())
	}
	chromedp.Do(ctx, chromedp.Focus("#viewport"), chromedp.KeyEvent(kb.ArrowDown))
	if !strings.Contains(overlay(), "2 / 10") {
		t.Errorf("after ArrowDown: %q", overlay())
	}
	chromedp.Do(ctx, chromedp.Click("#cine"))
	time.Sleep(700 * time.Millisecond)
	chromedp.Do(ctx, chromedp.Click("#cine"))
	screenshot(ctx, t, out, "cine")
	if strings.Contains(overlay(), "2 / 10") {
		t.Errorf("cine did not move the frames: %q", overlay())
	}
}

// TestCompare opens a study, picks the patient's prior from the comparison bar, and scrolls the two side by side
// together.
func TestCompare(t *testing.T) {
	r := newRegion(t)
	out := artifacts(t)
	token, err := r.ids.CreateToken(t.Context(), renkei.System, &renkei.APIToken{Institution: r.hospital.PK, Name: "ct", Write: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, seed := range []int64{810, 811} { // two studies of one patient: the current one and a prior
		body, ctype := r.stowBody("H20", "Mori^Aki=森^亜紀", seed, 5)
		if st := r.withToken(token).do("POST", "/dicomweb/studies", body, "Content-Type", ctype); st != 200 {
			t.Fatalf("store: %d", st)
		}
	}
	u := r.users["tanaka@chuo-hospital"]
	ctx, cancel := browser(t)
	defer cancel()
	steps := []chromedp.Action[chromedp.Void]{r.loginSteps(u), chromedp.WaitVisible("#studies a.view"),
		chromedp.Click("#studies a.view"), chromedp.WaitVisible("#priors a.compare-link"), chromedp.Click("#priors a.compare-link"),
		chromedp.WaitVisible(`#viewport-a[data-stack="loaded"]`), chromedp.WaitVisible(`#viewport-b[data-stack="loaded"]`)}
	if err := chromedp.Do(ctx, steps...); err != nil {
		screenshot(ctx, t, out, "failed")
		t.Fatal(err)
	}
	slice := func(id string) string {
		s, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('#`+id+`').dataset.slice`))
		return s
	}
	beforeB := slice("viewport-b")
	chromedp.Do(ctx, chromedp.Focus("#viewport-a"), chromedp.KeyEvent(kb.ArrowDown), chromedp.KeyEvent(kb.ArrowDown))
	screenshot(ctx, t, out, "compared")
	if slice("viewport-a") != slice("viewport-b") || slice("viewport-b") == beforeB {
		t.Errorf("the two studies did not scroll together: a at %s, b at %s (b was at %s)", slice("viewport-a"), slice("viewport-b"), beforeB)
	}
}
