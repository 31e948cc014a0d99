package web_test

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestTrashBrowser is the clinic's admin correcting a study sent with the wrong patient ID: they delete it from the
// list (it moves to the trash and leaves the list), restore it, delete it again, remove it for good from the trash;
// the corrected study (same UID, the right patient) is then accepted, where it was refused while the wrong copy
// waited in the trash. Nobody else removes it: not a physician, not another institution's admin.
func TestTrashBrowser(t *testing.T) {
	r := newRegion(t)
	out := artifacts(t)
	ctx, cancel := browser(t)
	defer cancel()
	step := stepper(ctx, t, out)
	uid := r.p2.studyUID
	row := `#studies tr[data-study="` + uid + `"]`
	resend := func() int {
		body, ctype := r.stowBody("P2-CORRECTED", "Sato^Jiro=佐藤^次郎", 3, 1) // the same seed: the same study UID
		return r.withToken(r.clinicWrite).do("POST", "/dicomweb/studies", body, "Content-Type", ctype)
	}

	step("trash-01-list", r.loginSteps(r.users["admin@kita-clinic"]), chromedp.WaitVisible(row+` button.delete`))
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(window.confirm = () => true, true)`)); err != nil {
		t.Fatal(err)
	}
	step("trash-02-deleted", chromedp.Click(row+` button.delete`), poll(`document.querySelector('`+row+`') === null`),
		hashRoute("#/trash"), chromedp.WaitVisible(`#trash tr[data-study="`+uid+`"]`))
	if st := resend(); st == 200 {
		t.Errorf("the corrected study was accepted while its wrong copy was in the trash: %d", st)
	}
	step("trash-03-restored", chromedp.Click(`#trash tr[data-study="`+uid+`"] button.restore`), chromedp.WaitVisible("#trash-empty"),
		hashRoute("#/studies"), chromedp.WaitVisible(row))
	confirmAll := func() {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(window.confirm = () => true, true)`)); err != nil {
			t.Fatal(err)
		}
	}
	confirmAll()
	step("trash-04-deleted-again", chromedp.Click(row+` button.delete`),
		poll(`document.querySelector('`+row+`') === null`), hashRoute("#/trash"), chromedp.WaitVisible(`#trash tr[data-study="`+uid+`"]`))

	// Only the admin's institution, and only those who manage images, remove it for good.
	if st := r.as("kato@kita-clinic").do("DELETE", "/api/trash/studies/"+uid, nil); st != 403 {
		t.Errorf("a physician removes a study for good: %d, want 403", st)
	}
	if st := r.as("admin@chuo-hospital").do("DELETE", "/api/trash/studies/"+uid, nil); st != 404 {
		t.Errorf("another institution's admin removes the clinic's study for good: %d, want 404", st)
	}

	confirmAll()
	step("trash-05-purged", chromedp.Click(`#trash tr[data-study="`+uid+`"] button.purge`), chromedp.WaitVisible("#trash-empty"))
	if st := resend(); st != 200 {
		t.Errorf("the corrected study after the wrong copy was removed for good: %d, want 200", st)
	}
	admin := r.as("admin@kita-clinic")
	if st := admin.do("DELETE", "/api/trash/studies/"+uid, nil); st != 404 {
		t.Errorf("removing a study that is not in the trash: %d, want 404", st)
	}
	var events []struct{ Detail, Study string }
	admin.getJSON("/api/audit?limit=100", &events)
	found := false
	for _, e := range events {
		found = found || strings.Contains(e.Detail, "purged from the trash at once")
	}
	if !found {
		t.Errorf("no audit event says the study was purged at once")
	}
}
