package web_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestInvokeImageDisplay: an EMR opens renkei by an IHE IID URL; without a login it learns nothing but where to go;
// the doctor logs in and lands on the viewer of that study.
func TestInvokeImageDisplay(t *testing.T) {
	r := newRegion(t)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for q, want := range map[string]string{
		"requestType=STUDY&studyUID=" + r.p1a.studyUID:                        "/#/viewer/" + r.p1a.studyUID,
		"requestType=STUDY&studyUID=" + r.p1a.studyUID + "," + r.p1b.studyUID: "/#/compare/" + r.p1a.studyUID + "/" + r.p1b.studyUID,
		"requestType=PATIENT&patientID=P1^^^%26KITA":                          "/#/studies?patientId=P1",
		"requestType=STUDY&studyUID=not-a-uid":                                "400",
		"requestType=SERIES":                                                  "400",
	} {
		resp, err := noRedirect.Get(r.srv.URL + "/IHEInvokeImageDisplay?" + q)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		got := resp.Header.Get("Location")
		if resp.StatusCode == 400 {
			got = "400"
		}
		if got != want {
			t.Errorf("%s: %d %q, want %q", q, resp.StatusCode, got, want)
		}
	}
	ctx, cancel := browser(t)
	defer cancel()
	u := r.users["kato@kita-clinic"]
	if err := chromedp.Do(ctx, chromedp.Navigate(r.srv.URL+"/IHEInvokeImageDisplay?requestType=STUDY&studyUID="+r.p1a.studyUID),
		chromedp.WaitVisible("#login-name"), r.loginSteps(u), chromedp.WaitVisible(`#viewport[data-stack="loaded"]`)); err != nil {
		screenshot(ctx, t, artifacts(t), "iid-failed")
		t.Fatal(err)
	}
	if loc, _ := chromedp.Run(ctx, chromedp.Evaluate[string]("location.hash")); !strings.HasPrefix(loc, "#/viewer/"+r.p1a.studyUID) {
		t.Errorf("after the login the app is at %q", loc)
	}
}
