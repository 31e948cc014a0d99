package web_test

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"renkei"
)

// TestLiveUpdates: a hospital's open app hears of its own new studies and of studies shared with it, and of nothing
// else: a clinic's new study, not shared, stays silent.
func TestLiveUpdates(t *testing.T) {
	r := newRegion(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", r.srv.URL+"/api/events", nil)
	req.Header.Set("Authorization", "Bearer "+r.hospitalRead)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("GET /api/events: %v %v", resp.Status, err)
	}
	defer resp.Body.Close()
	got := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				got <- d
			}
		}
		close(got)
	}()
	next := func(wait time.Duration) string {
		select {
		case s := <-got:
			return s
		case <-time.After(wait):
			return ""
		}
	}
	// The clinic stores a new study: the hospital hears nothing.
	body, ctype := r.stowBody("P30", "Other^Patient", 930, 1)
	r.withToken(r.clinicWrite).do("POST", "/dicomweb/studies", body, "Content-Type", ctype)
	if s := next(500 * time.Millisecond); s != "" {
		t.Errorf("the hospital heard of the clinic's unshared study %s", s)
	}
	// The hospital's own modality stores one: heard.
	own, _ := r.ids.CreateToken(t.Context(), renkei.System, &renkei.APIToken{Institution: r.hospital.PK, Name: "ct", Write: true})
	mine := r.stow(own, "H31", "Own^Patient", 931, 1)
	if s := next(5 * time.Second); s != mine.studyUID {
		t.Errorf("the hospital's own new study: heard %q, want %s", s, mine.studyUID)
	}
	// The clinic shares patient P1: both its studies are heard.
	clinic := r.as("kato@kita-clinic")
	if st := clinic.post("/api/shares", map[string]any{"patientId": "P1", "toInstitution": "chuo-hospital", "purpose": "referral"}); st != 201 {
		t.Fatalf("share: %d %s", st, clinic.body)
	}
	heard := map[string]bool{next(5 * time.Second): true, next(5 * time.Second): true}
	if !heard[r.p1a.studyUID] || !heard[r.p1b.studyUID] {
		t.Errorf("after the share the hospital heard %v, want P1's two studies", heard)
	}
	if s := next(300 * time.Millisecond); s != "" {
		t.Errorf("and also %s", s)
	}
}
