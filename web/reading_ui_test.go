package web_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// TestReadingBrowser: the radiologist opens a reading request, opens its CT from it, marks two key images in the
// viewer, goes back and signs the report; the clinic's referral shows the report with the two key images.
func TestReadingBrowser(t *testing.T) {
	r := newRegion(t)
	out := artifacts(t)
	clinic := r.as("kato@kita-clinic")
	if st := clinic.post("/api/referrals", map[string]any{"kind": "reading", "priority": "urgent", "issuer": "KITA", "patientId": "P1",
		"toInstitution": "chuo-hospital", "studies": []string{r.p1a.studyUID}, "letter": map[string]string{"purpose": "胸部CTの読影をお願いします"}}); st != 201 {
		t.Fatalf("create: %d %s", st, clinic.body)
	}
	id := decodeReferral(t, clinic).ID
	if st := clinic.post(fmt.Sprintf("/api/referrals/%d/send", id), nil); st != 200 {
		t.Fatalf("send: %d", st)
	}
	ctx, cancel := browser(t)
	defer cancel()
	step := stepper(ctx, t, out)
	step("01-worklist", r.loginSteps(r.users["suzuki@chuo-hospital"]), chromedp.WaitVisible("#search"), hashRoute("#/referrals"),
		chromedp.WaitVisible("#worklist tbody tr"))
	if s, _ := liveText(ctx, "#worklist"); !strings.Contains(s, "至急") || !strings.Contains(s, "胸部CT") {
		t.Errorf("the worklist reads %q", s)
	}
	step("02-request", chromedp.Click(`#worklist a[href^="#/referral/"]`), chromedp.WaitVisible("#reply-form"),
		chromedp.Click(`#referral-studies a.view`), chromedp.WaitVisible("#key-image"), poll(`document.querySelector('#viewport').dataset.zoom !== undefined`))
	step("03-key-images", chromedp.Click("#key-image"), chromedp.Focus("#viewport"), chromedp.KeyEvent(kb.ArrowUp), // ArrowUp: another slice (it opens in the middle, here the last of two)
		poll(`document.querySelector('#key-image').getAttribute('aria-pressed') === 'false'`),
		chromedp.Click("#key-image"), poll(`document.querySelector('#key-image').textContent.includes('(2)')`))
	// Back on the request, the page may be drawn twice (its own render and a live update of the key images saved a
	// moment ago): type only once the form has stayed the same for a while. Typing then holds further redraws off.
	step("04-report", chromedp.Click("#back-to-referral"), chromedp.WaitVisible("#key-images img"), poll(settled("#reply-form")),
		chromedp.SendKeys("#reply-findings", "右上葉に12mmの結節。"), chromedp.SendKeys("#reply-impression", "肺癌の疑い"),
		chromedp.Click("#reply-send"), chromedp.WaitVisible("#report-key-images img"))
	var ref struct {
		Status string
		Reply  struct {
			Impression string
			KeyImages  []struct{ Instance string }
		}
	}
	clinic.getJSON(fmt.Sprintf("/api/referrals/%d", id), &ref)
	if ref.Status != "completed" || ref.Reply.Impression != "肺癌の疑い" || len(ref.Reply.KeyImages) != 2 ||
		ref.Reply.KeyImages[0].Instance == ref.Reply.KeyImages[1].Instance {
		b, _ := json.Marshal(ref)
		t.Errorf("the clinic sees %s", b)
	}
}

// settled is a JavaScript condition for poll: the element matching sel has been the same node for 800 ms (longer
// than the live updates' 300 ms debounce and their fetch), so a redraw is not about to replace it.
func settled(sel string) string {
	return fmt.Sprintf(`(() => { const n = document.querySelector(%q); if (!n) return false;
		if (window.__settleNode !== n) { window.__settleNode = n; window.__settleAt = Date.now(); return false; }
		return Date.now() - window.__settleAt > 800; })()`, sel)
}
