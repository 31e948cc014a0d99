package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"renkei"
	"renkei/archive"
	"renkei/sqlstore/pgtest"
)

// The study list over HTTP (QIDO-RS /dicomweb/studies and the web app's /api/studies), for a hospital whose list
// mixes its own studies with studies shared with it and with one of its users, against the list this test works out
// itself: the same studies, in the same order (ties on date and time broken by the key, across owners), page by
// page, with their series and instance counts. The index answers these browses from its grants table
// (sqlstore.browseStudies); the rule the test applies is the shares' own.

// listStudy is one study of the test's region, as the test knows it.
type listStudy struct {
	seq                         int // insertion order: the index's key grows with it
	uid                         string
	owner                       int64
	patient                     renkei.PatientKey
	name, sex, birth            string
	date, time, desc, referring string
	series                      []listSeries
	trashed                     bool
}

type listSeries struct {
	uid, modality string
	instances     int
	trashed       bool
}

func (s *listStudy) counts() (series, instances int) {
	for _, se := range s.series {
		if !se.trashed {
			series++
			instances += se.instances
		}
	}
	return series, instances
}

func (s *listStudy) has(modalities ...string) bool {
	for _, se := range s.series {
		if !se.trashed && slices.Contains(modalities, se.modality) {
			return true
		}
	}
	return false
}

// listShare is one share, as the test knows it.
type listShare struct {
	from           int64
	patient        renkei.PatientKey
	toInst, toUser int64
	expires        time.Time
	studies        []string // none: all the patient's studies
}

// mayList is the access rule: the caller's institution's own studies, and those a share in force at at grants to
// the institution or to the user (a revoked share is not in the test's list).
func mayList(st *listStudy, shares []*listShare, inst, user int64, at time.Time) bool {
	if st.trashed {
		return false
	}
	if st.owner == inst {
		return true
	}
	for _, sh := range shares {
		if !sh.expires.After(at) || sh.from != st.owner || sh.patient != st.patient {
			continue
		}
		if sh.toInst != inst && (user == 0 || sh.toUser != user) {
			continue
		}
		if len(sh.studies) == 0 || slices.Contains(sh.studies, st.uid) {
			return true
		}
	}
	return false
}

func TestStudyListPages(t *testing.T) {
	for _, b := range []struct {
		name   string
		target func(t testing.TB) string
	}{
		{"sqlite", func(testing.TB) string { return "" }},
		{"postgres", pgtest.URL},
	} {
		t.Run(b.name, func(t *testing.T) { testStudyListPages(t, b.target(t)) })
	}
}

func testStudyListPages(t *testing.T, target string) {
	r := newRegionOn(t, target)
	ctx := context.Background()
	south := renkei.Institution{ID: "minami-clinic", Name: "南クリニック", Kind: renkei.Clinic, Issuer: "MINAMI"}
	if err := r.db.PutInstitution(ctx, &south, nil); err != nil {
		t.Fatal(err)
	}
	A, B, C := r.clinic.PK, r.hospital.PK, south.PK
	tanaka := r.users["tanaka@chuo-hospital"].pk

	var studies []*listStudy
	byUID := map[string]*listStudy{}
	// add stores a study, one series per modality with n instances each, through the index (as the archive would).
	add := func(owner int64, issuer, pid, name, sex, birth, date, tm, desc, referring string, series ...any) string {
		t.Helper()
		st := &listStudy{seq: len(studies), uid: fmt.Sprintf("1.2.392.9.%d", len(studies)+1), owner: owner,
			patient: renkei.PatientKey{Issuer: issuer, ID: pid}, name: name, sex: sex, birth: birth, date: date, time: tm, desc: desc, referring: referring}
		for i := 0; i+1 < len(series); i += 2 {
			se := listSeries{uid: fmt.Sprintf("%s.%d", st.uid, i/2+1), modality: series[i].(string), instances: series[i+1].(int)}
			for k := 1; k <= se.instances; k++ {
				in := &renkei.Instance{Institution: owner, Patient: st.patient, PatientName: name, PatientNameKeys: archive.NameKeys(name),
					PatientSex: sex, PatientBirthDate: birth, StudyInstanceUID: st.uid, StudyDate: date, StudyTime: tm, StudyDescription: desc,
					ReferringPhysicianName: referring, ReferringPhysicianKey: archive.NameKeyList(referring),
					SeriesInstanceUID: se.uid, Modality: se.modality, SOPInstanceUID: fmt.Sprintf("%s.%d", se.uid, k),
					SOPClassUID: "1.2.840.10008.5.1.4.1.1.2", TransferSyntaxUID: "1.2.840.10008.1.2.1",
					BlobKey: fmt.Sprintf("%s-%d", se.uid, k), Size: 1, ReceivedAt: r.clock.Now()}
				if _, _, err := r.db.Insert(ctx, in); err != nil {
					t.Fatal(err)
				}
			}
			st.series = append(st.series, se)
		}
		studies = append(studies, st)
		byUID[st.uid] = st
		return st.uid
	}
	var shares []*listShare
	share := func(from int64, issuer, pid string, toInst, toUser int64, d time.Duration, uids ...string) *listShare {
		t.Helper()
		sh := &renkei.Share{FromInstitution: from, Patient: renkei.PatientKey{Issuer: issuer, ID: pid}, ToInstitution: toInst, ToUser: toUser,
			Purpose: renkei.PurposeReferral, ExpiresAt: r.clock.Now().Add(d), WithoutConsent: true, Studies: uids, CreatedByName: "test"}
		if err := r.db.CreateShare(ctx, sh, nil); err != nil {
			t.Fatal(err)
		}
		ls := &listShare{from: from, patient: sh.Patient, toInst: toInst, toUser: toUser, expires: sh.ExpiresAt, studies: uids}
		shares = append(shares, ls)
		return ls
	}
	trash := func(study, series string, restore bool) {
		t.Helper()
		if _, err := r.db.Trash(ctx, renkei.TrashRequest{Study: study, Series: series, Restore: restore}); err != nil {
			t.Fatal(err)
		}
	}

	const tie, tieTime = "20240105", "101500" // many studies at one moment, of every owner: the key orders them
	// The hospital's own (some of its patients' issuer is another's, OTHER).
	add(B, "CHUO", "PB1", "Kimura^Aki", "F", "19600101", tie, tieTime, "Chest CT", "Suzuki^Ichiro", "CT", 2, "MR", 1)
	add(B, "CHUO", "PB1", "Kimura^Aki", "F", "19600101", "", "", "Hand", "", "CR", 1)             // no date, no time
	add(B, "CHUO", "PB2", "Abe^Ken", "M", "19800303", tie, "", "Head CT", "Tanaka^Jiro", "CT", 1) // no time
	add(B, "CHUO", "PB2", "Abe^Ken", "M", "19800303", tie, tieTime, "Chest MR", "", "MR", 3)
	b5 := add(B, "OTHER", "PB3", "Ueda^Mai", "F", "", "20231231", "230000", "", "", "CT", 2, "US", 1)
	b6 := add(B, "OTHER", "PB3", "Ueda^Mai", "F", "", "20240301", "080000", "Abdomen CT", "", "CT", 1)
	b7 := add(B, "OTHER", "PB3", "Ueda^Mai", "F", "", "20240110", "090000", "Knee MR", "Suzuki^Hanako", "MR", 1)
	// The clinic's.
	add(A, "KITA", "PA1", "Ito^Hana", "F", "19550505", tie, tieTime, "Chest CT", "Tanaka^Jiro", "CT", 1)
	add(A, "KITA", "PA1", "Ito^Hana", "F", "19550505", "20240201", "120000", "Brain MR", "", "MR", 2)
	add(A, "KITA", "PA2", "Endo^Shin", "M", "19700707", tie, tieTime, "Chest CT", "", "CT", 1)
	add(A, "KITA", "PA2", "Endo^Shin", "M", "19700707", "", "", "", "", "CT", 1)
	add(A, "KITA", "PA3", "Ota^Yuki", "F", "19900909", "20240115", "140000", "Wrist", "Suzuki^Jiro", "CR", 1)
	a6 := add(A, "KITA", "PA4", "Mori^Ken", "M", "19650606", tie, tieTime, "Chest CT", "", "CT", 1)
	add(A, "KITA", "PA4", "Mori^Ken", "M", "19650606", "20240106", "000000", "Chest CT", "", "CT", 1)
	add(A, "KITA", "PA5", "Hara^Rin", "F", "19850808", "20240120", "100000", "Chest CT", "", "CT", 1)
	add(A, "KITA", "PA6", "Noda^Jun", "M", "19750101", "20240125", "100000", "Brain MR", "", "MR", 1)
	add(A, "KITA", "PA7", "Sano^Emi", "F", "19620202", tie, tieTime, "Chest CT", "", "CT", 1)
	a12 := add(A, "KITA", "PA1", "Ito^Hana", "F", "19550505", "20240210", "100000", "Chest CT", "", "CT", 1)
	// The other clinic's.
	add(C, "OTHER", "PC1", "Kudo^Sho", "M", "19500505", tie, tieTime, "Chest CT", "Suzuki^Ichiro", "CT", 1, "SR", 1)
	add(C, "MINAMI", "PC2", "Baba^Nao", "F", "19681212", tie, tieTime, "Head MR", "", "MR", 1)
	add(C, "MINAMI", "PC3", "Goto^Ai", "F", "19700101", tie, tieTime, "Chest CT", "", "CT", 1)

	share(A, "KITA", "PA1", B, 0, 48*time.Hour)                    // to the hospital: all of PA1's studies
	share(A, "KITA", "PA2", 0, tanaka, 48*time.Hour)               // to one of its doctors only
	share(A, "KITA", "PA3", B, 0, 48*time.Hour)                    // to the hospital
	share(A, "KITA", "PA3", 0, tanaka, 72*time.Hour)               // and to the doctor: listed once
	share(A, "KITA", "PA4", B, 0, 48*time.Hour, a6)                // one study of two
	share(A, "KITA", "PA6", 0, r.users["suzuki@chuo-hospital"].pk, // to another doctor of the hospital
		48*time.Hour)
	revoked := &renkei.Share{FromInstitution: A, Patient: renkei.PatientKey{Issuer: "KITA", ID: "PA7"}, ToInstitution: B,
		Purpose: renkei.PurposeReferral, ExpiresAt: r.clock.Now().Add(48 * time.Hour), WithoutConsent: true}
	if err := r.db.CreateShare(ctx, revoked, nil); err != nil {
		t.Fatal(err)
	}
	if err := r.db.RevokeShare(ctx, revoked.ID, A, nil); err != nil {
		t.Fatal(err)
	}
	share(C, "OTHER", "PC1", B, 0, 48*time.Hour)
	share(C, "MINAMI", "PC2", 0, tanaka, 48*time.Hour)
	share(C, "MINAMI", "PC3", A, 0, 48*time.Hour)  // to the clinic, not the hospital
	share(B, "CHUO", "PB1", A, 0, 48*time.Hour)    // from the hospital: its list does not change
	share(B, "OTHER", "PB3", 0, tanaka, time.Hour) // the hospital's own patient to its own doctor: listed once
	// A study of a shared patient that arrives after the share, and studies in and out of the trash.
	add(A, "KITA", "PA1", "Ito^Hana", "F", "19550505", tie, tieTime, "Chest CT", "Tanaka^Jiro", "CT", 2)
	trash(a12, "", false)
	byUID[a12].trashed = true
	trash(b6, "", false)
	byUID[b6].trashed = true
	trash(b7, "", false)
	trash(b7, "", true)
	trash(b5, b5+".2", false) // the US series: the study keeps one series of two instances
	byUID[b5].series[1].trashed = true

	// The callers: the hospital's token, and two of its doctors logged in.
	type caller struct {
		name string
		c    *client
		user int64
	}
	callers := []caller{
		{"token", r.withToken(r.hospitalRead), 0},
		{"tanaka", r.as("tanaka@chuo-hospital"), tanaka},
		{"suzuki", r.as("suzuki@chuo-hospital"), r.users["suzuki@chuo-hospital"].pk},
	}
	// A share that ends between two pages of the list (made after the logins, which move the clock).
	share(A, "KITA", "PA5", B, 0, 5*time.Minute)

	type qido struct {
		params string
		match  func(*listStudy) bool
	}
	between := func(v, lo, hi string) bool { return v != "" && (lo == "" || v >= lo) && (hi == "" || v <= hi) }
	family := func(pn string) string { f, _, _ := strings.Cut(pn, "^"); return f }
	all := func(*listStudy) bool { return true }
	queries := []qido{
		{"", all},
		{"StudyDate=20240101-20241231", func(s *listStudy) bool { return between(s.date, "20240101", "20241231") }},
		{"StudyDate=-20240105", func(s *listStudy) bool { return between(s.date, "", "20240105") }},
		{"StudyDate=20240105-", func(s *listStudy) bool { return between(s.date, "20240105", "") }},
		{"StudyDate=20240105", func(s *listStudy) bool { return s.date == tie }},
		{"StudyDate=20240105&StudyTime=101500", func(s *listStudy) bool { return s.date == tie && s.time == tieTime }},
		{"ModalitiesInStudy=CT", func(s *listStudy) bool { return s.has("CT") }},
		{"ModalitiesInStudy=MR,CR", func(s *listStudy) bool { return s.has("MR", "CR") }},
		{"StudyDescription=Chest*", func(s *listStudy) bool { return strings.HasPrefix(s.desc, "Chest") }},
		{"StudyDescription=*MR", func(s *listStudy) bool { return strings.HasSuffix(s.desc, "MR") }},
		{"PatientSex=F", func(s *listStudy) bool { return s.sex == "F" }},
		{"PatientBirthDate=19500101-19691231", func(s *listStudy) bool { return between(s.birth, "19500101", "19691231") }},
		{"IssuerOfPatientID=OTHER", func(s *listStudy) bool { return s.patient.Issuer == "OTHER" }},
		{"includefield=all", all},
		{"includefield=00081030,00100040", all},
		{"ReferringPhysicianName=Tanaka%5EJiro", func(s *listStudy) bool { return s.referring == "Tanaka^Jiro" }},
		{"fuzzymatching=true&ReferringPhysicianName=Suzuki", func(s *listStudy) bool { return family(s.referring) == "Suzuki" }},
		{"StudyDate=20240101-20241231&ModalitiesInStudy=CT&PatientSex=F&includefield=all", func(s *listStudy) bool {
			return between(s.date, "20240101", "20241231") && s.has("CT") && s.sex == "F"
		}},
	}
	// expect lists what a caller may see that matches, in the order of less.
	expect := func(cl caller, match func(*listStudy) bool, less func(a, b *listStudy) int) []*listStudy {
		var out []*listStudy
		for _, s := range studies {
			if mayList(s, shares, B, cl.user, r.clock.Now()) && match(s) {
				out = append(out, s)
			}
		}
		slices.SortFunc(out, less)
		return out
	}
	newest := func(a, b *listStudy) int {
		if c := strings.Compare(b.date, a.date); c != 0 {
			return c
		}
		if c := strings.Compare(b.time, a.time); c != 0 {
			return c
		}
		return b.seq - a.seq
	}
	check := func(what string, got []listEntry, want []*listStudy) {
		t.Helper()
		var w []listEntry
		for _, s := range want {
			n, m := s.counts()
			w = append(w, listEntry{s.uid, n, m})
		}
		if !slices.Equal(got, w) {
			t.Errorf("%s:\n got %v\nwant %v", what, got, w)
		}
	}
	// pages asks for the list whole, without a limit and with limit 0, page by page, and past its end.
	pages := func(what string, want []*listStudy, get func(limit, offset string) []listEntry) {
		t.Helper()
		check(what, get("", ""), want)
		check(what+" limit=0", get("0", ""), want)
		for off := 0; off < len(want); off += 4 {
			check(fmt.Sprintf("%s limit=4 offset=%d", what, off), get("4", strconv.Itoa(off)), want[off:min(off+4, len(want))])
		}
		// Past the end, up to the largest offset (limit plus offset must not wrap around).
		check(what+" limit=4 past the end", get("4", strconv.Itoa(len(want)+100)), nil)
		check(what+" limit=4 offset=MaxInt-2", get("4", strconv.Itoa(math.MaxInt-2)), nil)
		check(what+" offset=MaxInt", get("", strconv.Itoa(math.MaxInt)), nil)
	}
	qidoList := func(cl caller, params, limit, offset string) []listEntry {
		t.Helper()
		v, err := url.ParseQuery(params)
		if err != nil {
			t.Fatal(err)
		}
		if limit != "" {
			v.Set("limit", limit)
		}
		if offset != "" {
			v.Set("offset", offset)
		}
		var objs []map[string]json.RawMessage
		cl.c.getJSON("/dicomweb/studies?"+v.Encode(), &objs)
		out := []listEntry{}
		for _, o := range objs {
			out = append(out, listEntry{stringValue(o, "0020000D"), intValue(t, o, "00201206"), intValue(t, o, "00201208")})
		}
		return out
	}
	type apiSort struct {
		sort string
		less func(a, b *listStudy) int
	}
	sorts := []apiSort{
		{"", newest},
		{"date", newest},
		{"date-asc", func(a, b *listStudy) int { return -newest(a, b) }},
		{"name", func(a, b *listStudy) int {
			if c := strings.Compare(a.name, b.name); c != 0 {
				return c
			}
			if c := strings.Compare(b.date, a.date); c != 0 {
				return c
			}
			return b.seq - a.seq
		}},
		{"patient-id", func(a, b *listStudy) int {
			if c := strings.Compare(a.patient.ID, b.patient.ID); c != 0 {
				return c
			}
			if c := strings.Compare(b.date, a.date); c != 0 {
				return c
			}
			return b.seq - a.seq
		}},
	}
	apiQueries := []qido{
		{"", all},
		{"modality=CT", func(s *listStudy) bool { return s.has("CT") }},
		{"from=2024-01-01&to=2024-12-31", func(s *listStudy) bool { return between(s.date, "20240101", "20241231") }},
		{"to=2024-01-05", func(s *listStudy) bool { return between(s.date, "", "20240105") }},
		{"birthDate=1955-05-05", func(s *listStudy) bool { return s.birth == "19550505" }},
		{"modality=CT&from=2024-01-05&to=2024-01-05", func(s *listStudy) bool { return s.has("CT") && s.date == tie }},
	}
	apiList := func(cl caller, params, sort, limit, offset string) []listEntry {
		t.Helper()
		v, _ := url.ParseQuery(params)
		for k, x := range map[string]string{"sort": sort, "limit": limit, "offset": offset} {
			if x != "" {
				v.Set(k, x)
			}
		}
		var list []struct {
			StudyInstanceUID  string
			NumberOfSeries    int
			NumberOfInstances int
		}
		cl.c.getJSON("/api/studies?"+v.Encode(), &list)
		out := []listEntry{}
		for _, e := range list {
			out = append(out, listEntry{e.StudyInstanceUID, e.NumberOfSeries, e.NumberOfInstances})
		}
		return out
	}

	run := func(when string, queries, apiQueries []qido) {
		for _, cl := range callers {
			for _, q := range queries {
				want := expect(cl, q.match, newest)
				pages(fmt.Sprintf("%s, %s: QIDO-RS %q", when, cl.name, q.params), want, func(limit, offset string) []listEntry {
					return qidoList(cl, q.params, limit, offset)
				})
			}
			if cl.user != tanaka {
				continue // the web app's list is for people; one with shares of their own is enough
			}
			for _, q := range apiQueries {
				for _, s := range sorts {
					want := expect(cl, q.match, s.less)
					pages(fmt.Sprintf("%s, %s: /api/studies %q sort %q", when, cl.name, q.params, s.sort), want, func(limit, offset string) []listEntry {
						return apiList(cl, q.params, s.sort, limit, offset)
					})
				}
			}
		}
	}
	run("with every share in force", queries, apiQueries)

	// The first page while PA5's share is in force, the second after it ended: each page is the list at its time.
	tanakaC := callers[1]
	first := qidoList(tanakaC, "", "4", "0")
	check("first page before the share ended", first, expect(tanakaC, all, newest)[:4])
	r.clock.Advance(6 * time.Minute)
	second := qidoList(tanakaC, "", "4", "4")
	check("second page after the share ended", second, expect(tanakaC, all, newest)[4:8])
	run("after a share ended", queries[:2], apiQueries[:1])
}

// listEntry is what the test compares of one study in a list: its UID and its counts.
type listEntry struct {
	uid               string
	series, instances int
}

func (e listEntry) String() string { return fmt.Sprintf("%s(%d/%d)", e.uid, e.series, e.instances) }

// intValue reads an IS or US element's first value from a DICOM JSON object (a number, or a string for IS).
func intValue(t *testing.T, obj map[string]json.RawMessage, tag string) int {
	t.Helper()
	var a struct{ Value []json.RawMessage }
	if err := json.Unmarshal(obj[tag], &a); err != nil || len(a.Value) == 0 {
		return -1
	}
	n, err := strconv.Atoi(strings.Trim(string(a.Value[0]), `"`))
	if err != nil {
		t.Fatalf("%s: %s is not a number", tag, a.Value[0])
	}
	return n
}
