package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"renkei"
	"renkei/internal/dicomtest"
)

// BenchmarkReferrals measures the three figures through the HTTP front as deployed (session login,
// clinical rules, audit): the referrals board of a hospital that received RENKEI_BENCH_REFERRALS referrals
// (default 10000; target p95 ≤ 100 ms), sending a referral with a 500-instance study attached (target ≤ 200 ms:
// sharing is a grant, not a copy), and printing a letter as PDF (target ≤ 300 ms). Each reports its p95 and its
// ratio to a baseline request in the same process (GET /api/institutions: a session, one small query, JSON).
//
//	go test ./web -run '^$' -bench Referrals -benchtime 200x
func BenchmarkReferrals(b *testing.B) {
	n := 10000
	if v, err := strconv.Atoi(os.Getenv("RENKEI_BENCH_REFERRALS")); err == nil && v > 0 {
		n = v
	}
	r := newRegion(b)
	ctx := context.Background()
	// A 500-instance study of P1 (small images: the cost measured is the grant, not the pixels).
	body, ctype := r.stowBodyOf(dicomtest.CTOptions{PatientID: "P1", PatientName: "Yamada^Taro=山田^太郎", Seed: 900}, 500)
	if st := r.withToken(r.clinicWrite).do("POST", "/dicomweb/studies", body, "Content-Type", ctype); st != 200 {
		b.Fatalf("stow: %d", st)
	}
	bigUID := dicomtest.UID("ct/900/study")
	// n referrals from the clinic to the hospital, in every status.
	kato, _, err := r.db.UserByLogin(ctx, "kato@kita-clinic")
	if err != nil {
		b.Fatal(err)
	}
	statuses := []renkei.ReferralStatus{renkei.StatusSent, renkei.StatusReceived, renkei.StatusAccepted, renkei.StatusCompleted, renkei.StatusDeclined}
	raw := r.rawDB()
	for i := range n {
		ref := renkei.Referral{Kind: renkei.KindReferral, FromInstitution: r.clinic.PK, FromUser: kato.PK, FromUserName: kato.Login,
			ToInstitution: r.hospital.PK, Patient: renkei.PatientKey{Issuer: "KITA", ID: "P1"}, Priority: "routine",
			Letter: renkei.Letter{Purpose: fmt.Sprint("精査のお願い ", i), Diagnosis: "右肺結節", Course: "経過"}}
		if err := r.db.CreateReferral(ctx, &ref, nil); err != nil {
			b.Fatal(err)
		}
		st := statuses[i%len(statuses)]
		if _, err := raw.Exec(`UPDATE referrals SET status = ?, version = 1 WHERE pk = ?`, string(st), ref.ID); err != nil {
			b.Fatal(err)
		}
	}
	hospital, clinic := r.as("tanaka@chuo-hospital"), r.as("kato@kita-clinic")
	measure := func(b *testing.B, c *client, path func() string, method string, want int) []time.Duration {
		var ds []time.Duration
		for b.Loop() {
			p := path()
			t0 := time.Now()
			var st int
			if method == "POST" {
				st = c.post(p, nil)
			} else {
				st = c.get(p)
			}
			ds = append(ds, time.Since(t0))
			if st != want {
				b.Fatalf("%s %s: %d %s", method, p, st, c.body)
			}
		}
		return ds
	}
	p95 := func(ds []time.Duration) time.Duration {
		slices.Sort(ds)
		return ds[len(ds)*95/100]
	}
	var base time.Duration
	b.Run("baseline-institutions", func(b *testing.B) {
		base = p95(measure(b, hospital, func() string { return "/api/institutions" }, "GET", 200))
		b.ReportMetric(float64(base.Microseconds())/1000, "p95-ms")
	})
	report := func(b *testing.B, ds []time.Duration) {
		p := p95(ds)
		b.ReportMetric(float64(p.Microseconds())/1000, "p95-ms")
		if base > 0 {
			b.ReportMetric(float64(p)/float64(base), "×baseline")
		}
	}
	b.Run("board-open", func(b *testing.B) {
		report(b, measure(b, hospital, func() string { return "/api/referrals?direction=in&status=sent,received,accepted" }, "GET", 200))
	})
	b.Run("board-all", func(b *testing.B) {
		report(b, measure(b, hospital, func() string { return "/api/referrals" }, "GET", 200))
	})
	b.Run("send-500-instances", func(b *testing.B) {
		var ds []time.Duration
		for b.Loop() {
			b.StopTimer()
			if st := clinic.post("/api/referrals", map[string]any{"issuer": "KITA", "patientId": "P1", "toInstitution": "chuo-hospital",
				"studies": []string{bigUID}, "letter": map[string]string{"purpose": "精査"}}); st != 201 {
				b.Fatalf("create: %d %s", st, clinic.body)
			}
			var ref struct{ ID int64 }
			json.Unmarshal(clinic.body, &ref)
			b.StartTimer()
			t0 := time.Now()
			if st := clinic.post(fmt.Sprintf("/api/referrals/%d/send", ref.ID), nil); st != 200 {
				b.Fatalf("send: %d %s", st, clinic.body)
			}
			ds = append(ds, time.Since(t0))
		}
		report(b, ds)
	})
	b.Run("letter-pdf", func(b *testing.B) {
		report(b, measure(b, hospital, func() string { return "/api/referrals/1/letter.pdf" }, "GET", http.StatusOK))
	})
}

// BenchmarkEmergencyBoard measures how long an emergency transfer takes from the sender's "send" to the event on the
// receiving hospital's open board (the target: ≤ 1 s p95), against a baseline round trip of the same
// server (GET /api/institutions) in the same process.
func BenchmarkEmergencyBoard(b *testing.B) {
	r := newRegion(b)
	clinic, hospital := r.as("kato@kita-clinic"), r.as("tanaka@chuo-hospital")
	board := listen(b, r, r.hospitalRead)
	var base []time.Duration
	for range 50 {
		t0 := time.Now()
		hospital.get("/api/institutions")
		base = append(base, time.Since(t0))
	}
	var ds []time.Duration
	for b.Loop() {
		b.StopTimer()
		if st := clinic.post("/api/referrals", map[string]any{"kind": "emergency", "issuer": "KITA", "patientId": "P1", "toInstitution": "chuo-hospital",
			"studies": []string{r.p1a.studyUID}, "etaMinutes": 15, "letter": map[string]string{"purpose": "救急"}}); st != 201 {
			b.Fatalf("create: %d %s", st, clinic.body)
		}
		var ref struct{ ID int64 }
		json.Unmarshal(clinic.body, &ref)
		b.StartTimer()
		t0 := time.Now()
		if st := clinic.post(fmt.Sprintf("/api/referrals/%d/send", ref.ID), nil); st != 200 {
			b.Fatalf("send: %d %s", st, clinic.body)
		}
		want := fmt.Sprintf("referral:%d", ref.ID)
		for ev := range board {
			if ev == want {
				break
			}
		}
		ds = append(ds, time.Since(t0))
	}
	slices.Sort(ds)
	slices.Sort(base)
	p95 := ds[len(ds)*95/100]
	b.ReportMetric(float64(p95.Microseconds())/1000, "p95-ms")
	b.ReportMetric(float64(p95)/float64(base[len(base)*95/100]), "×baseline")
}
