package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"renkei"
	"renkei/web"
)

// TestPublicRoutes pins the list of routes that answer without a login. Adding one is a security decision: change
// this test with it, on purpose.
func TestPublicRoutes(t *testing.T) {
	// /readyz tells a load balancer whether the node can serve (its reason only to the loopback and the metrics
	// networks); /metrics answers only the loopback and --metrics-allow, 404 to anyone else.
	want := []string{"GET /healthz", "GET /readyz", "GET /metrics", "GET /{$}", "GET /ui/{file...}", "GET /IHEInvokeImageDisplay", "POST /api/login", "POST /api/invitations/accept",
		"GET /link/{token}", "GET /api/link/{token}", "POST /api/link/{token}/unlock", "GET /api/link/{token}/studies", "GET /api/link/{token}/image"}
	if d := cmp.Diff(want, web.Public); d != "" {
		t.Errorf("the public routes changed (-want +got):\n%s", d)
	}
}

var pathParam = regexp.MustCompile(`\{[a-z]+(\.\.\.)?\}`)

// TestRouteSweep sends every registered route a request without credentials, with a tampered cookie, and with a
// bogus bearer token: everything outside web.Public answers 401, and a route added without thought is caught here.
func TestRouteSweep(t *testing.T) {
	r := newRegion(t)
	routes := r.front.Routes()
	if len(routes) < 30 {
		t.Fatalf("only %d routes registered: the sweep is not seeing DICOMweb", len(routes))
	}
	for _, pattern := range routes {
		method, path, ok := strings.Cut(pattern, " ")
		if !ok {
			method, path = "GET", pattern
		}
		path = strings.ReplaceAll(path, "{$}", "")
		path = pathParam.ReplaceAllStringFunc(path, func(p string) string {
			if p == "{id}" {
				return "1"
			}
			return r.p1a.studyUID
		})
		for _, cred := range []struct {
			name string
			set  func(*client)
		}{
			{"no credentials", func(*client) {}},
			{"a tampered session cookie", func(c *client) { c.cookie = "forged-session-value" }},
			{"an unknown API token", func(c *client) { c.token = "rk_notarealtokenatall" }},
			{"a non-bearer Authorization", func(c *client) {}},
		} {
			c := &client{r: r}
			cred.set(c)
			hdr := []string{}
			if cred.name == "a non-bearer Authorization" {
				hdr = []string{"Authorization", "Basic a2F0bzpwYXNzd29yZA=="}
			}
			st := c.do(method, path, strings.NewReader("{}"), hdr...)
			public := slices.Contains(web.Public, pattern)
			if !public && st != http.StatusUnauthorized {
				t.Errorf("%s %s with %s: %d, want 401", method, path, cred.name, st)
			}
			if public && st == http.StatusUnauthorized && method == "GET" {
				t.Errorf("public %s %s with %s: 401", method, path, cred.name)
			}
			if strings.Contains(string(c.body), "山田") || strings.Contains(string(c.body), "Yamada") {
				t.Errorf("%s %s with %s leaks patient data: %s", method, path, cred.name, c.body)
			}
		}
	}
}

// visible reports which of the clinic's studies a caller finds by QIDO-RS and can retrieve by WADO-RS and WADO-URI,
// through every read path. A study it may not see must answer exactly like one that does not exist.
func visible(t *testing.T, c *client, studies ...study) []bool {
	t.Helper()
	var out []bool
	for _, st := range studies {
		paths := map[string]int{}
		get := func(name, path string, hdr ...string) {
			paths[name] = c.get(path, hdr...)
		}
		base := "/dicomweb/studies/" + st.studyUID
		inst := base + "/series/" + st.seriesUID + "/instances/" + st.instanceUIDs[0]
		var list []any
		for _, q := range []string{"/dicomweb/studies?StudyInstanceUID=" + st.studyUID, "/dicomweb/studies?PatientID=" + st.patient.ID,
			"/dicomweb/series?StudyInstanceUID=" + st.studyUID, "/dicomweb/instances?SOPInstanceUID=" + st.instanceUIDs[0],
			base + "/series", base + "/instances", base + "/series/" + st.seriesUID + "/instances"} {
			list = nil
			if code := c.get(q); code == 200 {
				json.Unmarshal(c.body, &list)
			}
			paths["QIDO "+q] = len(list)
			if strings.Contains(q, "PatientID=") && !strings.Contains(string(c.body), st.studyUID) {
				paths["QIDO "+q] = 0 // the patient's other studies may be visible; this one is not listed
			}
		}
		get("WADO-RS study", base, "Accept", `multipart/related; type="application/dicom"; transfer-syntax=*`)
		get("WADO-RS series", base+"/series/"+st.seriesUID, "Accept", `multipart/related; type="application/dicom"; transfer-syntax=*`)
		get("WADO-RS instance", inst, "Accept", `multipart/related; type="application/dicom"; transfer-syntax=*`)
		get("metadata", base+"/metadata")
		get("frames", inst+"/frames/1", "Accept", `multipart/related; type="application/octet-stream"; transfer-syntax=*`)
		get("WADO-URI", fmt.Sprintf("/dicomweb/wado?requestType=WADO&studyUID=%s&seriesUID=%s&objectUID=%s&contentType=application/dicom",
			st.studyUID, st.seriesUID, st.instanceUIDs[0]))
		seen, hidden := 0, 0
		for name, v := range paths {
			switch {
			case strings.HasPrefix(name, "QIDO") && v > 0, !strings.HasPrefix(name, "QIDO") && v == 200:
				seen++
			case strings.HasPrefix(name, "QIDO") && v == 0, v == 404:
				hidden++
			default:
				t.Errorf("%s of %s: status %d, want 200 or 404", name, st.studyUID, v)
			}
		}
		if seen > 0 && hidden > 0 {
			t.Errorf("study %s is visible on some read paths and not others: %v", st.studyUID, paths)
		}
		out = append(out, seen > 0)
	}
	return out
}

// TestCrossInstitution: the hospital cannot see or guess the clinic's data through any read path, before a share,
// after its expiry and after its revocation; a share of a patient shows all that patient's studies (and no other
// patient's), a share of one study only that study; the clinic keeps seeing everything of its own.
func TestCrossInstitution(t *testing.T) {
	r := newRegion(t)
	doctor := r.as("tanaka@chuo-hospital")
	token := r.withToken(r.hospitalRead)
	clinic := r.as("kato@kita-clinic")
	all := []study{r.p1a, r.p1b, r.p2}

	if got := visible(t, clinic, all...); !slices.Equal(got, []bool{true, true, true}) {
		t.Fatalf("the clinic sees %v of its own studies", got)
	}
	for name, c := range map[string]*client{"physician": doctor, "API token": token} {
		if got := visible(t, c, all...); !slices.Equal(got, []bool{false, false, false}) {
			t.Errorf("before any share the hospital's %s sees %v", name, got)
		}
		var list []any
		c.getJSON("/dicomweb/studies", &list)
		if len(list) != 0 {
			t.Errorf("before any share the hospital's %s lists %d studies", name, len(list))
		}
	}

	// The clinic shares patient P1 (all studies) with the hospital for a referral, for 7 days.
	if st := clinic.post("/api/shares", map[string]any{"patientId": "P1", "toInstitution": "chuo-hospital", "purpose": "referral",
		"reason": "紹介: 胸部CT", "days": 7}); st != 201 {
		t.Fatalf("share: %d %s", st, clinic.body)
	}
	var share struct {
		ID     int64
		Active bool
	}
	json.Unmarshal(clinic.body, &share)
	for name, c := range map[string]*client{"physician": doctor, "API token": token} {
		if got := visible(t, c, all...); !slices.Equal(got, []bool{true, true, false}) {
			t.Errorf("after sharing P1 the hospital's %s sees %v, want P1's two studies only", name, got)
		}
	}
	var in []map[string]any
	doctor.getJSON("/api/shares?direction=in", &in)
	if len(in) != 1 || in[0]["purpose"] != "referral" || in[0]["sharedBy"] != "kato@kita-clinic" || in[0]["fromInstitution"] != "kita-clinic" {
		t.Errorf("the receiver does not see who shared what and why: %v", in)
	}
	// While the share is in force the receiver may see P1, so the share names the patient (for the clerk's list).
	if len(in) == 1 && in[0]["patientName"] != "Yamada^Taro=山田^太郎" {
		t.Errorf("the receiver's share names the patient %v", in[0]["patientName"])
	}
	// The hospital cannot revoke the clinic's share, nor share the clinic's patient onwards.
	if st := doctor.post(fmt.Sprintf("/api/shares/%d/revoke", share.ID), nil); st != 404 {
		t.Errorf("the receiver revoked the sharer's share: %d", st)
	}
	if st := doctor.post("/api/shares", map[string]any{"issuer": "KITA", "patientId": "P1", "toInstitution": "kita-clinic", "purpose": "consult"}); st != 404 {
		t.Errorf("the receiver re-shared the clinic's patient: %d %s", st, doctor.body)
	}

	// Revoked: gone at once.
	if st := clinic.post(fmt.Sprintf("/api/shares/%d/revoke", share.ID), nil); st != 200 {
		t.Fatalf("revoke: %d %s", st, clinic.body)
	}
	if got := visible(t, doctor, all...); !slices.Equal(got, []bool{false, false, false}) {
		t.Errorf("after revocation the hospital sees %v", got)
	}
	// Nor does the revoked share still name the patient to the receiver; the clinic, whose patient it is, still sees it.
	in = nil
	doctor.getJSON("/api/shares?direction=in", &in)
	if len(in) != 1 || in[0]["patientName"] != nil || in[0]["patientId"] != "P1" {
		t.Errorf("after revocation the receiver's share reads %v", in)
	}
	var out []map[string]any
	clinic.getJSON("/api/shares", &out)
	if len(out) != 1 || out[0]["patientName"] != "Yamada^Taro=山田^太郎" {
		t.Errorf("the clinic's own revoked share reads %v", out)
	}

	// One study only, to one user, for one day: the other physician's colleague sees nothing, and after a day
	// neither does he.
	if st := clinic.post("/api/shares", map[string]any{"patientId": "P1", "studies": []string{r.p1b.studyUID}, "toUser": "tanaka@chuo-hospital",
		"purpose": "second-opinion", "days": 1}); st != 201 {
		t.Fatalf("share one study: %d %s", st, clinic.body)
	}
	if got := visible(t, doctor, all...); !slices.Equal(got, []bool{false, true, false}) {
		t.Errorf("after sharing one study with him the physician sees %v", got)
	}
	if got := visible(t, r.as("suzuki@chuo-hospital"), all...); !slices.Equal(got, []bool{false, false, false}) {
		t.Errorf("a share with one user shows his colleague %v", got)
	}
	r.clock.Advance(25 * time.Hour)
	doctor, clinic = r.as("tanaka@chuo-hospital"), r.as("kato@kita-clinic") // sessions end after 12 hours
	if got := visible(t, doctor, all...); !slices.Equal(got, []bool{false, false, false}) {
		t.Errorf("after expiry the physician sees %v", got)
	}
	// A study of another patient cannot be smuggled into a share.
	if st := clinic.post("/api/shares", map[string]any{"patientId": "P1", "studies": []string{r.p2.studyUID}, "toInstitution": "chuo-hospital",
		"purpose": "referral"}); st != 404 {
		t.Errorf("sharing P2's study as P1's: %d %s", st, clinic.body)
	}
}

// TestOwnCopy: when the hospital imports the clinic's referral CD, its copy is its own (the same UIDs, stored
// again), the import reveals nothing about what the clinic holds, and deleting it leaves the clinic's untouched.
func TestOwnCopy(t *testing.T) {
	r := newRegion(t)
	hospitalWrite, err := r.ids.CreateToken(context.Background(), renkei.System, &renkei.APIToken{Institution: r.hospital.PK, Name: "cd-import", Write: true})
	if err != nil {
		t.Fatal(err)
	}
	// Same seed: the same UIDs and bytes as the clinic's P2 study.
	copy := r.stow(hospitalWrite, "P2", "Sato^Jiro=佐藤^次郎", 3, 1)
	if copy.studyUID != r.p2.studyUID {
		t.Fatalf("the CD copy has study %s, want the clinic's %s", copy.studyUID, r.p2.studyUID)
	}
	var list []map[string]struct{ Value []any }
	r.withToken(hospitalWrite).getJSON("/dicomweb/studies", &list)
	if len(list) != 1 {
		t.Errorf("the hospital sees %d studies after importing one", len(list))
	}
	admin := r.as("admin@chuo-hospital")
	if st := admin.do("DELETE", "/dicomweb/studies/"+r.p2.studyUID, nil); st != 200 && st != 204 {
		t.Fatalf("the hospital deletes its copy: %d %s", st, admin.body)
	}
	if got := visible(t, r.as("kato@kita-clinic"), r.p2); !got[0] {
		t.Error("deleting the hospital's copy removed the clinic's study")
	}
	// And the clinic's studies cannot be deleted by the hospital.
	if st := admin.do("DELETE", "/dicomweb/studies/"+r.p1a.studyUID, nil); st != 404 {
		t.Errorf("the hospital deleted the clinic's study: %d", st)
	}
	// Only administrators and radiologists delete.
	if st := r.as("kato@kita-clinic").do("DELETE", "/dicomweb/studies/"+r.p1a.studyUID, nil); st != 403 {
		t.Errorf("a physician deleted a study: %d", st)
	}
}

// TestReadOnlyToken: a read token cannot store; a store by a write token is owned by the token's institution.
func TestReadOnlyToken(t *testing.T) {
	r := newRegion(t)
	c := r.withToken(r.hospitalRead)
	st := c.do("POST", "/dicomweb/studies", strings.NewReader("--b\r\nContent-Type: application/dicom\r\n\r\nx\r\n--b--\r\n"),
		"Content-Type", `multipart/related; type="application/dicom"; boundary=b`)
	if st != 403 && st != 409 {
		t.Errorf("a read-only token stored: %d %s", st, c.body)
	}
	body, _ := r.stowBody("RO1", "Read^Only", 901, 1)
	raw, _ := io.ReadAll(body)
	i := bytes.Index(raw, []byte("\r\n\r\n"))
	part := raw[i+4 : bytes.LastIndex(raw, []byte("\r\n--"))]
	if st := c.do("POST", "/api/upload?name=x.dcm", bytes.NewReader(part), "Content-Type", "application/dicom"); st != 403 {
		t.Errorf("a read-only token uploaded: %d %s", st, c.body)
	}
}
