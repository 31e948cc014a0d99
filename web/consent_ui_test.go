package web_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"strconv"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
)

// TestConsentBrowser is consent at the clinic's counter: a clerk opens the patient whose consent is not recorded (a
// share of them is refused), the patient reads the statement on the screen and signs with a finger in the box (an
// empty box is refused first), the clerk records it; the consent is listed in force, its document holds the
// statement and the drawn signature, the share now goes through; then the patient withdraws and the clerk records
// that, which ends the share.
func TestConsentBrowser(t *testing.T) {
	r := newRegion(t)
	clerk := r.addUser("ito@kita-clinic", r.clinic, "clerk")
	out := artifacts(t)
	ctx, cancel := browser(t)
	defer cancel()
	step := stepper(ctx, t, out)
	api := r.as("ito@kita-clinic")
	if st := api.post("/api/shares", map[string]any{"patientId": "P2", "toInstitution": "chuo-hospital", "purpose": "referral", "days": 7}); st != 403 {
		t.Fatalf("a share of P2 before any consent: %d %s, want 403", st, api.body)
	}

	step("consent-01-none", r.loginSteps(clerk), chromedp.WaitVisible("#search"), hashRoute("#/patient/kita-clinic/KITA/P2"),
		chromedp.WaitVisible("#consent-form"))
	state, _ := liveText(ctx, "#consent-state")
	statement, _ := liveText(ctx, "#consent-statement")
	if !strings.Contains(state, "有効な同意がありません") || !strings.Contains(statement, "佐藤") || !strings.Contains(statement, "北町クリニック") {
		t.Errorf("before consent the card says %q and the statement is %q", state, statement)
	}
	step("consent-02-empty-pad", chromedp.Click("#consent-submit"), poll(`document.querySelector('#message').textContent.includes('署名の枠が空')`))

	// The patient signs: a stroke across the box, as a finger would (pointer events from the mouse).
	box, err := chromedp.Run(ctx, chromedp.Evaluate[[]float64](`(() => { const r = document.querySelector('#consent-pad').getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; })()`))
	if err != nil || len(box) != 4 {
		t.Fatal(box, err)
	}
	x0, y0, w, hgt := box[0], box[1], box[2], box[3]
	events := []input.DispatchMouseEventParams{{Type: input.DispatchMouseEventTypeMouseMoved, X: x0 + w*.1, Y: y0 + hgt*.6},
		{Type: input.DispatchMouseEventTypeMousePressed, X: x0 + w*.1, Y: y0 + hgt*.6, Button: input.MouseButtonLeft, Buttons: 1, ClickCount: 1}}
	for i := 1; i <= 20; i++ {
		f := float64(i) / 20
		events = append(events, input.DispatchMouseEventParams{Type: input.DispatchMouseEventTypeMouseMoved, X: x0 + w*(.1+.7*f), Y: y0 + hgt*(.6-.3*f*(1-f)*4),
			Button: input.MouseButtonLeft, Buttons: 1})
	}
	events = append(events, input.DispatchMouseEventParams{Type: input.DispatchMouseEventTypeMouseReleased, X: x0 + w*.8, Y: y0 + hgt*.6, Button: input.MouseButtonLeft, ClickCount: 1})
	for _, ev := range events {
		if _, err := devtools(ctx, input.DispatchMouseEvent, ev); err != nil {
			t.Fatal(err)
		}
	}
	step("consent-03-recorded", chromedp.Click("#consent-submit"), chromedp.WaitVisible("#consents li"))
	listed, _ := liveText(ctx, "#consents")
	if !strings.Contains(listed, "有効") || !strings.Contains(listed, "画面での署名") || !strings.Contains(listed, "地域の医療・介護機関すべて") {
		t.Errorf("the recorded consent is listed as %q", listed)
	}

	// What was stored: the statement the patient read and the signature they drew.
	var consents []struct {
		ID     int64  `json:"id"`
		Method string `json:"method"`
		Scope  string `json:"scope"`
	}
	api.getJSON("/api/consents?issuer=KITA&patientId=P2", &consents)
	if len(consents) != 1 || consents[0].Method != "electronic" || consents[0].Scope != "region" {
		t.Fatalf("consents of P2: %+v", consents)
	}
	if st := api.get("/api/consents/" + strconv.FormatInt(consents[0].ID, 10) + "/document"); st != 200 {
		t.Fatalf("document: %d", st)
	}
	var doc struct{ Statement, Signature string }
	if err := json.Unmarshal(api.body, &doc); err != nil {
		t.Fatalf("the document is not a signed statement: %v %.100s", err, api.body)
	}
	if !strings.Contains(doc.Statement, "佐藤") || !strings.Contains(doc.Statement, "撤回") {
		t.Errorf("the signed statement is %q", doc.Statement)
	}
	if ink := inked(t, doc.Signature); ink < 100 {
		t.Errorf("the stored signature has %d dark pixels: nothing was drawn", ink)
	}
	step("consent-04-document", chromedp.Click(`#consents li button.secondary`), chromedp.WaitVisible("#consent-signature"))

	if st := api.post("/api/shares", map[string]any{"patientId": "P2", "toInstitution": "chuo-hospital", "purpose": "referral", "days": 7}); st != 201 {
		t.Fatalf("a share of P2 after the consent: %d %s", st, api.body)
	}
	var share struct{ ID int64 }
	json.Unmarshal(api.body, &share)

	// Stopping a share asks first: a slip of the mouse does not cut the hospital off (the answer here is "no").
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(window.asked = [], window.confirm = (m) => (window.asked.push(m), false), true)`)); err != nil {
		t.Fatal(err)
	}
	step("consent-04b-shares", hashRoute("#/shares"), chromedp.WaitVisible("table.shares-out button"), chromedp.Click("table.shares-out button"),
		poll(`window.asked.length === 1`))
	if row, _ := liveText(ctx, "table.shares-out tbody"); !strings.Contains(row, "すべての検査") {
		t.Errorf("the share's row does not say what it covers: %q", row)
	}
	// The clerk recognises the patient by name, as in the study list, not by the ID alone.
	if cell, _ := liveText(ctx, "table.shares-out tbody td.share-patient"); !strings.Contains(cell, "佐藤 次郎") || !strings.Contains(cell, "ID P2") {
		t.Errorf("the share's patient reads %q", cell)
	}
	if asked, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`window.asked[0]`)); !strings.Contains(asked, "共有") || !strings.Contains(asked, "P2") ||
		!strings.Contains(asked, "佐藤 次郎") {
		t.Errorf("the question before stopping the share: %q", asked)
	}
	if !shareActive(api, share.ID) {
		t.Errorf("the share ended although the user answered no")
	}
	step("consent-04c-back", hashRoute("#/patient/kita-clinic/KITA/P2"), chromedp.WaitVisible("#consents li button.withdraw"))

	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(window.confirm = () => true, true)`)); err != nil {
		t.Fatal(err)
	}
	step("consent-05-withdrawn", chromedp.Click(`#consents li button.withdraw`),
		poll(`document.querySelector('#consents li.withdrawn') !== null`))
	if s, _ := liveText(ctx, "#consent-state"); !strings.Contains(s, "有効な同意がありません") {
		t.Errorf("after the withdrawal the card says %q", s)
	}
	if shareActive(api, share.ID) {
		t.Errorf("the share that rested on the withdrawn consent is still active")
	}

	// The server takes no empty pad and no non-image for a drawn signature, whatever the page does.
	blank := image.NewRGBA(image.Rect(0, 0, 600, 200))
	for i := range blank.Pix {
		blank.Pix[i] = 0xff
	}
	var buf bytes.Buffer
	png.Encode(&buf, blank)
	for name, img := range map[string]string{"empty pad": base64.StdEncoding.EncodeToString(buf.Bytes()), "not an image": base64.StdEncoding.EncodeToString([]byte("%PDF-1.4"))} {
		if st := api.post("/api/consents", map[string]any{"patientId": "P2", "scope": []string{"region"}, "method": "electronic",
			"signature": "私は同意します", "signatureImage": img}); st != 400 {
			t.Errorf("%s as a signature: %d %s, want 400", name, st, api.body)
		}
	}
}

// inked counts the dark, opaque pixels of a data: URL PNG.
func inked(t *testing.T, dataURL string) int {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(dataURL, "data:image/png;base64,"))
	if err != nil {
		t.Fatalf("signature %.60q: %v", dataURL, err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for y := img.Bounds().Min.Y; y < img.Bounds().Max.Y; y++ {
		for x := img.Bounds().Min.X; x < img.Bounds().Max.X; x++ {
			c := color.GrayModel.Convert(img.At(x, y)).(color.Gray)
			if _, _, _, a := img.At(x, y).RGBA(); a > 0x8000 && c.Y < 0x80 {
				n++
			}
		}
	}
	return n
}

// shareActive reports whether the share with id is listed among c's institution's shares as in force.
func shareActive(c *client, id int64) bool {
	var shares []struct {
		ID     int64
		Active bool
	}
	c.getJSON("/api/shares", &shares)
	for _, sh := range shares {
		if sh.ID == id {
			return sh.Active
		}
	}
	return false
}
