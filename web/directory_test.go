package web_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"renkei"
)

type dirEntry struct {
	Institution struct{ ID, Name string }
	Profile     struct {
		Specialties []string
		Latitude    float64
	}
	Capacity []struct {
		Key, Emergency string
		Beds           *int
		Stale          bool
	}
	DistanceKm *float64
	Editable   bool
}

// TestDirectory (JSON API): the hospital's administrator keeps its profile and capacity; a clinic finds it by what
// it needs, with the distance; nobody else may change the hospital's entry; capacity older than the limit is shown
// as stale and no longer counts.
func TestDirectory(t *testing.T) {
	r := newRegion(t)
	r.addUser("ito@chuo-hospital", r.hospital, renkei.Clerk)
	admin, clerk, clinic, clinicAdmin := r.as("admin@chuo-hospital"), r.as("ito@chuo-hospital"), r.as("kato@kita-clinic"), r.as("admin@kita-clinic")
	r.clinic.CareFunctions, r.hospital.CareFunctions = []string{"在宅"}, []string{"高度急性期", "急性期"}
	for _, in := range []*renkei.Institution{&r.clinic, &r.hospital} {
		if err := r.db.PutInstitution(context.Background(), in, nil); err != nil {
			t.Fatal(err)
		}
	}
	put := func(c *client, id string, v any) int {
		b, _ := json.Marshal(v)
		return c.do("PUT", "/api/directory/"+id+"/profile", strings.NewReader(string(b)), "Content-Type", "application/json")
	}
	if st := put(admin, "chuo-hospital", map[string]any{"specialties": []string{"脳卒中", "心臓血管外科"}, "equipment": []string{"CT", "MRI", "血管造影"},
		"latitude": 35.6812, "longitude": 139.7671, "accepts": []string{"紹介", "救急"}, "contactPhone": "03-1234-5678"}); st != 200 {
		t.Fatalf("profile: %d %s", st, admin.body)
	}
	if st := put(clinicAdmin, "kita-clinic", map[string]any{"latitude": 35.7101, "longitude": 139.8107}); st != 200 {
		t.Fatalf("clinic profile: %d %s", st, clinicAdmin.body)
	}
	if st := clerk.post("/api/directory/chuo-hospital/capacity", []map[string]any{{"key": "emergency", "emergency": "yes"}, {"key": "beds:ICU", "beds": 2}}); st != 200 {
		t.Fatalf("capacity: %d %s", st, clerk.body)
	}
	// Others may not change the hospital's entry.
	for _, c := range []*client{clinic, clinicAdmin, r.as("tanaka@chuo-hospital")} {
		if st := put(c, "chuo-hospital", map[string]any{"address": "x"}); st != 403 {
			t.Errorf("someone else edited the hospital's profile: %d", st)
		}
		if st := c.post("/api/directory/chuo-hospital/capacity", []map[string]any{{"key": "emergency", "emergency": "no"}}); st != 403 {
			t.Errorf("someone else reported the hospital's capacity: %d", st)
		}
	}
	var found []dirEntry
	clinic.getJSON("/api/directory?specialty="+"脳卒中"+"&emergency=1&km=20&beds=ICU", &found)
	if len(found) != 1 || found[0].Institution.ID != "chuo-hospital" || found[0].DistanceKm == nil || *found[0].DistanceKm < 4 || *found[0].DistanceKm > 6 || found[0].Editable {
		t.Fatalf("the clinic's search: %+v", found)
	}
	clinic.getJSON("/api/directory?km=2", &found)
	if len(found) != 0 {
		t.Errorf("within 2 km: %+v", found)
	}
	// Thirteen hours later the report is stale: shown as such, and the hospital no longer counts as accepting.
	r.clock.Advance(13 * time.Hour)
	clinic = r.as("kato@kita-clinic")
	clinic.getJSON("/api/directory?emergency=1", &found)
	if len(found) != 0 {
		t.Errorf("a stale report still counts: %+v", found)
	}
	var e dirEntry
	clinic.getJSON("/api/directory/chuo-hospital", &e)
	if len(e.Capacity) != 2 || !e.Capacity[0].Stale || !e.Capacity[1].Stale {
		t.Errorf("the stale report is not marked stale: %+v", e.Capacity)
	}
	// The directory as FHIR (IHE mCSD): the hospital's Organization, Location and HealthcareService, the stale
	// capacity marked stale.
	if st := clinic.get("/api/directory/fhir"); st != 200 {
		t.Fatalf("directory FHIR: %d %s", st, clinic.body)
	}
	var bundle struct {
		Type  string
		Entry []struct{ Resource map[string]any }
	}
	json.Unmarshal(clinic.body, &bundle)
	kinds := map[string]int{}
	for _, e := range bundle.Entry {
		kinds[e.Resource["resourceType"].(string)]++
	}
	if bundle.Type != "collection" || kinds["Organization"] != 2 || kinds["Location"] != 2 || kinds["HealthcareService"] != 2 ||
		!strings.Contains(string(clinic.body), `"stale"`) || !strings.Contains(string(clinic.body), "35.6812") {
		t.Errorf("the directory as FHIR: %v %s", kinds, clinic.body[:min(400, len(clinic.body))])
	}
	var hist []map[string]any
	clinic.getJSON("/api/directory/chuo-hospital/history", &hist)
	if len(hist) != 2 {
		t.Errorf("history: %v", hist)
	}
}

// TestDirectoryBrowser: the hospital's administrator updates its capacity in the browser; a clinic doctor finds it
// accepting emergencies and, from the result, writes a referral already addressed to it.
func TestDirectoryBrowser(t *testing.T) {
	r := newRegion(t)
	// Map tiles: the deployment's tile server, here any image this server has.
	r.front.MapTiles = r.srv.URL + "/ui/help/login.png?{z}/{x}/{y}"
	out := artifacts(t)
	ctx, cancel := browser(t)
	defer cancel()
	step := stepper(ctx, t, out)
	step("01-capacity", r.loginSteps(r.users["admin@chuo-hospital"]), chromedp.WaitVisible("#search"), hashRoute("#/directory/chuo-hospital"),
		chromedp.WaitVisible("#capacity-form"), chromedp.Click(`#capacity-form input[name="em"][value="yes"]`),
		chromedp.SetValue("#cap-beds-ICU", "2"), chromedp.Click("#cap-submit"), chromedp.WaitVisible(`ul.capacity li[data-key="beds:ICU"]`),
		chromedp.WaitVisible(`#history-chart polyline[data-key="beds:ICU"]`))
	step("01b-profile", chromedp.SetValue("#pf-address", "東京都港区芝公園1-1"), chromedp.SetValue("#pf-latitude", "35.6586"),
		chromedp.SetValue("#pf-longitude", "139.7454"), chromedp.Click(`#profile-form input[name="functions"][value="急性期"]`),
		chromedp.Click("#pf-submit"), poll(`document.querySelector('dl.profile') && document.querySelector('dl.profile').textContent.includes('芝公園')`))
	if s, _ := chromedp.Run(ctx, chromedp.Text("h1")); !strings.Contains(s, "急性期") {
		t.Errorf("the care function was not saved: %q", s)
	}
	step("02-logout", chromedp.Click("#logout"), chromedp.WaitVisible("#login-name"))
	step("03-search", r.loginSteps(r.users["kato@kita-clinic"]), chromedp.WaitVisible("#search"), hashRoute("#/directory"),
		chromedp.WaitVisible("#dir-search"), chromedp.Click("#dir-emergency"), chromedp.Click("#dir-submit"),
		chromedp.WaitVisible(`#dir-results li[data-institution="chuo-hospital"]`))
	if s, _ := chromedp.Run(ctx, chromedp.Text("#dir-results")); !strings.Contains(s, "受入可") || !strings.Contains(s, "空床(ICU)") {
		t.Errorf("the result reads %q", s)
	}
	if n, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#dir-map .pin').length`)); n != 1 {
		t.Errorf("the map shows %d pins, want 1", n)
	}
	// In English the region's fixed words (functions, equipment, ward kinds) are English too, not the stored codes.
	step("03b-english", chromedp.Click("#lang"), poll(`document.querySelector('#dir-search legend').textContent === 'Functions'`),
		chromedp.WaitVisible(`#dir-results li[data-institution="chuo-hospital"]`))
	form, _ := liveText(ctx, "#dir-search")
	results, _ := liveText(ctx, "#dir-results")
	for _, want := range []string{"Advanced acute", "Angiography", "Convalescent rehabilitation"} {
		if !strings.Contains(form, want) {
			t.Errorf("the English search form lacks %q:\n%s", want, form)
		}
	}
	if strings.Contains(form, "高度急性期") || strings.Contains(form, "血管造影") || !strings.Contains(results, "Acute") {
		t.Errorf("Japanese codes in the English directory:\n%s\n%s", form, results)
	}
	step("04-refer", chromedp.Click(`#dir-results a[data-refer="chuo-hospital"]`), chromedp.WaitVisible("#pick-id"),
		chromedp.SendKeys("#pick-id", "P1"), chromedp.Click(`#pick-patient button[type="submit"]`), chromedp.WaitVisible("#referral-form"))
	if v, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('#ref-to').value`)); v != "chuo-hospital" {
		t.Errorf("the letter is addressed to %q, want chuo-hospital", v)
	}
}

// TestDirectoryNewInstitution: the directory the server keeps in memory follows the institutions themselves. One
// that joins the region (written by the admin command, perhaps on another node) is found at once, and one renamed
// or given other care functions shows the new ones, without waiting for somebody's profile or capacity report.
func TestDirectoryNewInstitution(t *testing.T) {
	r := newRegion(t)
	kato := r.as("kato@kita-clinic")
	var list []dirEntry
	kato.getJSON("/api/directory", &list) // the directory as the server keeps it now (the caller's own left out)
	if len(list) != 1 {
		t.Fatalf("directory: %d entries", len(list))
	}
	minami := renkei.Institution{ID: "minami-hospital", Name: "南病院", Kind: renkei.Hospital, Issuer: "MINAMI", CareFunctions: []string{"回復期"}}
	if err := r.db.PutInstitution(context.Background(), &minami, nil); err != nil {
		t.Fatal(err)
	}
	if st := kato.get("/api/directory/minami-hospital"); st != 200 {
		t.Errorf("the new institution's entry: %d %s", st, kato.body)
	}
	kato.getJSON("/api/directory?function=回復期", &list)
	if len(list) != 1 || list[0].Institution.ID != "minami-hospital" {
		t.Errorf("a search for 回復期 after the institution joined: %+v", list)
	}
	r.hospital.Name = "中央総合病院"
	if err := r.db.PutInstitution(context.Background(), &r.hospital, nil); err != nil {
		t.Fatal(err)
	}
	var e dirEntry
	kato.getJSON("/api/directory/chuo-hospital", &e)
	if e.Institution.Name != "中央総合病院" {
		t.Errorf("after the hospital was renamed the directory says %q", e.Institution.Name)
	}
}
