package web_test

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/pquerna/otp/totp"
)

var updateHelp = flag.Bool("update", false, "TestHelpScreenshots: write the help page's screenshots into web/ui/help")

// TestHelpScreenshots checks that the help page shows each topic with its screenshot, in Japanese; with -update it
// first takes the screenshots, from the app itself, so that the help never shows a screen that no longer exists.
func TestHelpScreenshots(t *testing.T) {
	r := newRegion(t)
	u := r.users["kato@kita-clinic"]
	ctx, cancel := browser(t)
	defer cancel()
	shot := func(name string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !*updateHelp {
			return
		}
		time.Sleep(300 * time.Millisecond) // thumbnails and fonts
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join("ui", "help", name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	shot("login", chromedp.Navigate(r.srv.URL+"/"), chromedp.WaitVisible("#login-name"), chromedp.SendKeys("#login-name", u.login))
	code, _ := totp.GenerateCode(u.totpKey, r.clock.Now())
	r.clock.Advance(30 * time.Second)
	chromedp.Do(ctx, chromedp.SendKeys("#login-password", u.password), chromedp.Click(`#login button[type="submit"]`), chromedp.WaitVisible("#totp-code"),
		chromedp.SendKeys("#totp-code", code), chromedp.Click(`#second button[type="submit"]`), chromedp.WaitVisible("#search"),
		chromedp.Click("#tour-skip"))
	shot("search", chromedp.SendKeys("#q-name", "山田"), chromedp.Click("#search-submit"), chromedp.Sleep(500*time.Millisecond), chromedp.WaitVisible("#studies tbody tr"))
	shot("view", chromedp.Click("#studies a.view"), chromedp.WaitVisible(`#viewport[data-stack="loaded"]`), chromedp.Click(`button[data-preset="abdomen"]`))
	cdrom(t, filepath.Join(r.dir, "CDROM"))
	shot("import", hashRoute("#/upload"), chromedp.WaitReady("#upload-folder"),
		chromedp.SetUploadFiles("#upload-folder", []string{filepath.Join(r.dir, "CDROM")}), chromedp.WaitReady(`#app[data-finished="true"]`))
	shot("share", hashRoute("#/studies"), chromedp.WaitVisible("#studies button.secondary"), chromedp.Click("#studies td button.secondary"),
		chromedp.WaitVisible("#share"))
	shot("referral", hashRoute("#/patient/kita-clinic/KITA/P1"), chromedp.WaitVisible("#write-referral"), chromedp.Click("#write-referral"),
		chromedp.WaitVisible("#referral-form"), chromedp.SetValue("#ref-to", "chuo-hospital"), chromedp.SendKeys("#ref-department", "呼吸器内科"),
		chromedp.Click("#ref-pull"), chromedp.SendKeys("#ref-purpose", "精査加療のお願い"), chromedp.SendKeys("#ref-diagnosis", "右肺結節"))
	shot("consent", hashRoute("#/patient/kita-clinic/KITA/P2"), chromedp.WaitVisible("#consent-form"), chromedp.ScrollIntoView("#consent"))
	// The emergency form is a physician's; kato is one.
	shot("emergency", hashRoute("#/break-glass"), chromedp.WaitVisible("#break-glass"), chromedp.SendKeys("#bg-name", "山田 太郎"),
		chromedp.SendKeys("#bg-reason", "救急搬送、意識障害"))

	// The help page: every topic with a screenshot that loads.
	if err := chromedp.Do(ctx, hashRoute("#/help"), chromedp.WaitVisible("#help-emergency")); err != nil {
		t.Fatal(err)
	}
	loaded, err := chromedp.Run(ctx, chromedp.Evaluate[int](`(async () => {
		const imgs = [...document.querySelectorAll('section.help img')];
		imgs.forEach((i) => { i.loading = 'eager'; }); // a lazy image below the fold would never decode
		await Promise.all(imgs.map((i) => i.decode().catch(() => null)));
		return imgs.filter((i) => i.naturalWidth > 0).length; })()`, chromedp.EvalAwaitPromise))
	if err != nil || loaded != 8 {
		t.Errorf("%d of 8 help screenshots load (%v): run go test ./web -run TestHelpScreenshots -update", loaded, err)
	}
}
