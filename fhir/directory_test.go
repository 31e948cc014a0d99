package fhir_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"renkei"
	"renkei/fhir"
)

var dirNow = time.Date(2025, 6, 2, 10, 0, 0, 0, time.FixedZone("JST", 9*3600))

func dirBeds(n int) *int { return &n }

// directoryEntries is a hospital with coordinates, equipment, departments and capacity (some of it stale), a
// clinic without coordinates, a care home, and the region operator (which the export leaves out). They come
// in no particular order.
func directoryEntries() []renkei.DirectoryEntry {
	return []renkei.DirectoryEntry{
		{
			Institution: renkei.Institution{PK: 12, ID: "sakura-home", Name: "さくら苑", Kind: renkei.CareHome, CareFunctions: []string{"介護"}},
			Profile:     renkei.Profile{Address: "東京都港区芝1-2-3", Latitude: 35.65, Longitude: 139.75, Accepts: []string{"介護施設入所", "レスパイト"}},
			Capacity: []renkei.CapacityItem{
				{Key: "beds:介護", Beds: dirBeds(1), UpdatedAt: dirNow.Add(-2 * time.Hour)},
			},
		},
		{
			Institution: renkei.Institution{PK: 1, ID: "region", Name: "事務局", Kind: renkei.RegionOperator},
		},
		{
			Institution: renkei.Institution{PK: 3, ID: "chuo-hospital", Name: "中央病院", NameEn: "Chuo Hospital", Kind: renkei.Hospital,
				Code: "1311234567", CareFunctions: []string{"高度急性期", "急性期"}, Email: "renkei@chuo.example.jp"},
			Profile: renkei.Profile{
				Departments: []string{"脳神経外科", "循環器内科", "救急科"},
				Specialties: []string{"脳卒中", "心筋梗塞"},
				Equipment:   []string{"CT", "MRI", "血管造影", "ドクターカー"},
				Address:     "東京都千代田区丸の内1-1-1",
				Latitude:    35.6812, Longitude: 139.7671,
				Hours:        "月〜金 9:00-12:00/14:00-17:00、土 9:00-12:00、日・祝 休診",
				Phone:        "03-1234-5678",
				ContactName:  "地域医療連携室",
				ContactPhone: "03-1234-5600",
				ContactFax:   "03-1234-5601",
				Accepts:      []string{"紹介", "救急", "転院"},
				UpdatedAt:    dirNow.Add(-48 * time.Hour),
			},
			Capacity: []renkei.CapacityItem{
				{Key: "oncall", OnCall: []string{"脳神経外科"}, UpdatedAt: dirNow.Add(-3 * time.Hour)},
				{Key: "beds:ICU", Beds: dirBeds(2), UpdatedAt: dirNow.Add(-30 * time.Hour)}, // stale
				{Key: "emergency", Emergency: renkei.EmergencyYes, UpdatedAt: dirNow.Add(-1 * time.Hour)},
				{Key: "beds:一般", Beds: dirBeds(12), UpdatedAt: dirNow.Add(-1 * time.Hour)},
				{Key: "note", Note: "MRI点検中", UpdatedAt: time.Time{}}, // no time: stale
			},
		},
		{
			Institution: renkei.Institution{PK: 7, ID: "minato-clinic", Name: "港診療所", Kind: renkei.Clinic, Code: "1319876543",
				CareFunctions: []string{"在宅"}, Email: "info@minato.example.jp"},
			Profile: renkei.Profile{Departments: []string{"内科"}, Hours: "午前 9:00-12:00 午後 15:00-18:00（木・日休診）", Phone: "03-9876-5432"},
		},
	}
}

// dirBundle is the export read as generic JSON.
type dirBundle struct {
	Type      string `json:"type"`
	Timestamp string `json:"timestamp"`
	Entry     []struct {
		FullURL  string         `json:"fullUrl"`
		Resource map[string]any `json:"resource"`
	} `json:"entry"`
}

func exportDirectory(t *testing.T, entries []renkei.DirectoryEntry) (dirBundle, []byte) {
	t.Helper()
	out, err := fhir.DirectoryBundle(entries, dirNow, 12*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var b dirBundle
	if err := json.Unmarshal(out, &b); err != nil {
		t.Fatal(err)
	}
	return b, out
}

func (b dirBundle) find(t *testing.T, typ, id string) map[string]any {
	t.Helper()
	for _, e := range b.Entry {
		if e.Resource["resourceType"] == typ && e.Resource["id"] == id {
			return e.Resource
		}
	}
	t.Fatalf("no %s/%s in the bundle", typ, id)
	return nil
}

// dirReferences collects every Reference.reference in v.
func dirReferences(v any, out *[]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && k == "reference" {
				*out = append(*out, s)
				continue
			}
			dirReferences(x, out)
		}
	case []any:
		for _, x := range v {
			dirReferences(x, out)
		}
	}
}

func dirProfiles(r map[string]any) []string {
	var out []string
	meta, _ := r["meta"].(map[string]any)
	for _, p := range meta["profile"].([]any) {
		out = append(out, p.(string))
	}
	return out
}

func TestDirectoryBundleShape(t *testing.T) {
	b, out := exportDirectory(t, directoryEntries())
	again, _ := fhir.DirectoryBundle(directoryEntries(), dirNow, 12*time.Hour)
	if string(out) != string(again) {
		t.Error("DirectoryBundle is not deterministic")
	}
	if !utf8.Valid(out) || !strings.Contains(string(out), "中央病院") || strings.Contains(string(out), `\u`) {
		t.Error("Japanese text is not written as plain UTF-8")
	}
	if b.Type != "collection" || b.Timestamp != "2025-06-02T10:00:00+09:00" {
		t.Errorf("bundle type %q timestamp %q", b.Type, b.Timestamp)
	}

	// Counts and order: Organizations, Locations, HealthcareServices, each by institution ID; no region operator.
	var got []string
	byURL := map[string]map[string]any{}
	for _, e := range b.Entry {
		got = append(got, e.Resource["resourceType"].(string)+"/"+e.Resource["id"].(string))
		if !strings.HasPrefix(e.FullURL, "urn:uuid:") || byURL[e.FullURL] != nil {
			t.Errorf("fullUrl %q is not a new urn:uuid", e.FullURL)
		}
		byURL[e.FullURL] = e.Resource
	}
	var want []string
	for _, typ := range []string{"Organization", "Location", "HealthcareService"} {
		for _, id := range []string{"chuo-hospital", "minato-clinic", "sakura-home"} {
			want = append(want, typ+"/"+id)
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("entries (-want +got):\n%s", diff)
	}

	// Every reference resolves within the Bundle, and to the right resource.
	for _, e := range b.Entry {
		var refs []string
		dirReferences(e.Resource, &refs)
		for _, ref := range refs {
			if byURL[ref] == nil {
				t.Errorf("%s/%s refers to %s, which is not in the bundle", e.Resource["resourceType"], e.Resource["id"], ref)
			}
		}
	}
	target := func(r map[string]any, path ...string) string {
		var v any = r
		for _, p := range path {
			switch x := v.(type) {
			case map[string]any:
				v = x[p]
			case []any:
				v = x[0].(map[string]any)[p]
			}
		}
		res := byURL[v.(string)]
		if res == nil {
			return "unresolved"
		}
		return res["resourceType"].(string) + "/" + res["id"].(string)
	}
	for _, id := range []string{"chuo-hospital", "minato-clinic", "sakura-home"} {
		svc := b.find(t, "HealthcareService", id)
		if got := target(svc, "providedBy", "reference"); got != "Organization/"+id {
			t.Errorf("HealthcareService/%s providedBy %s", id, got)
		}
		if got := target(svc, "location", "reference"); got != "Location/"+id {
			t.Errorf("HealthcareService/%s location %s", id, got)
		}
		if got := target(b.find(t, "Location", id), "managingOrganization", "reference"); got != "Organization/"+id {
			t.Errorf("Location/%s managingOrganization %s", id, got)
		}
	}

	// Profiles.
	for _, e := range b.Entry {
		r := e.Resource
		var wantP []string
		switch r["resourceType"] {
		case "Organization":
			wantP = []string{fhir.ProfileMCSDOrganization, fhir.ProfileMCSDFacilityOrganization}
		case "Location":
			wantP = []string{fhir.ProfileMCSDLocation, fhir.ProfileMCSDFacilityLocation}
			if r["position"] != nil {
				wantP = append(wantP, fhir.ProfileMCSDLocationDistance)
			}
		case "HealthcareService":
			wantP = []string{fhir.ProfileMCSDHealthcareService}
		}
		if diff := cmp.Diff(wantP, dirProfiles(r)); diff != "" {
			t.Errorf("%s/%s meta.profile (-want +got):\n%s", r["resourceType"], r["id"], diff)
		}
	}

	// Organization: 医療機関コード, names, types, contacts.
	org := b.find(t, "Organization", "chuo-hospital")
	wantOrg := map[string]any{
		"identifier": []any{map[string]any{"system": fhir.SystemInstitutionNo, "value": "1311234567"}},
		"name":       "中央病院",
		"alias":      []any{"Chuo Hospital"},
		"active":     true,
		"type": []any{
			map[string]any{"coding": []any{map[string]any{"system": fhir.SystemMCSDTypes, "code": "facility", "display": "Facility"}}},
			map[string]any{"coding": []any{map[string]any{"system": fhir.SystemOrganizationType, "code": "prov", "display": "Healthcare Provider"}}},
			map[string]any{"coding": []any{map[string]any{"system": fhir.SystemInstitutionKind, "code": "hospital", "display": "病院"}}, "text": "病院"},
		},
		"telecom": []any{
			map[string]any{"system": "phone", "value": "03-1234-5678", "use": "work"},
			map[string]any{"system": "email", "value": "renkei@chuo.example.jp", "use": "work"},
		},
	}
	for k, w := range wantOrg {
		if diff := cmp.Diff(w, org[k]); diff != "" {
			t.Errorf("Organization/chuo-hospital %s (-want +got):\n%s", k, diff)
		}
	}
	if home := b.find(t, "Organization", "sakura-home"); home["identifier"] != nil {
		t.Errorf("care home without a 医療機関コード has identifier %v", home["identifier"])
	}

	// Location: position only where known; hours.
	loc := b.find(t, "Location", "chuo-hospital")
	if diff := cmp.Diff(map[string]any{"latitude": 35.6812, "longitude": 139.7671}, loc["position"]); diff != "" {
		t.Errorf("position (-want +got):\n%s", diff)
	}
	if got := loc["physicalType"].(map[string]any)["coding"].([]any)[0].(map[string]any)["code"]; got != "bu" {
		t.Errorf("physicalType %v", got)
	}
	if clinic := b.find(t, "Location", "minato-clinic"); clinic["position"] != nil || clinic["hoursOfOperation"] != nil ||
		clinic["availabilityExceptions"] != "午前 9:00-12:00 午後 15:00-18:00（木・日休診）" {
		t.Errorf("clinic location %v", clinic)
	}

	// HealthcareService: what it offers, and capacity with staleness.
	svc := b.find(t, "HealthcareService", "chuo-hospital")
	texts := func(key string) []string {
		var out []string
		for _, c := range svc[key].([]any) {
			out = append(out, c.(map[string]any)["text"].(string))
		}
		return out
	}
	for key, w := range map[string][]string{
		"type": {"脳神経外科", "循環器内科", "救急科"}, "specialty": {"脳卒中", "心筋梗塞"}, "category": {"高度急性期", "急性期"},
		"characteristic": {"CT", "MRI", "血管造影", "ドクターカー"}, "program": {"紹介", "救急", "転院"},
	} {
		if diff := cmp.Diff(w, texts(key)); diff != "" {
			t.Errorf("HealthcareService.%s (-want +got):\n%s", key, diff)
		}
	}
	if c := svc["characteristic"].([]any)[3].(map[string]any); c["coding"] != nil {
		t.Errorf("a word outside renkei.EquipmentKinds is coded: %v", c)
	}
	stale := map[string]any{}
	updated := map[string]any{}
	for _, x := range svc["extension"].([]any) {
		ext := x.(map[string]any)
		if ext["url"] != fhir.ExtensionCapacity {
			continue
		}
		name := ""
		for _, s := range ext["extension"].([]any) {
			s := s.(map[string]any)
			switch s["url"] {
			case "kind":
				name += s["valueCode"].(string)
			case "ward":
				name += ":" + s["valueCoding"].(map[string]any)["display"].(string)
			case "stale":
				stale[name] = s["valueBoolean"]
			case "updated":
				updated[name] = s["valueDateTime"]
			}
		}
	}
	wantStale := map[string]any{"beds:ICU": true, "beds:一般": false, "emergency": false, "note": true, "oncall": false}
	if diff := cmp.Diff(wantStale, stale); diff != "" {
		t.Errorf("stale (-want +got):\n%s", diff)
	}
	if updated["beds:ICU"] != "2025-06-01T04:00:00+09:00" || updated["note"] != nil {
		t.Errorf("updated %v", updated)
	}
	div := svc["text"].(map[string]any)["div"].(string)
	for _, line := range []string{"【古い情報】空床（ICU）: 2床", "【古い情報】連絡事項（MRI点検中）　更新日時不明", "救急受入: 可　2025-06-02 09:00 更新"} {
		if !strings.Contains(div, line) {
			t.Errorf("narrative lacks %q:\n%s", line, div)
		}
	}
	if strings.Contains(div, "【古い情報】救急") {
		t.Errorf("fresh item marked stale:\n%s", div)
	}
	if b.find(t, "HealthcareService", "minato-clinic")["extension"] != nil {
		t.Error("clinic without capacity has capacity extensions")
	}
}

// The package's own input guard (Parse) reads the export: it is well-formed FHIR JSON, and the only complaints
// are that Parse, which imports a patient's record, does not import directory resources.
func TestDirectoryBundleGuard(t *testing.T) {
	_, out := exportDirectory(t, directoryEntries())
	_, err := fhir.Parse(out)
	var ve *fhir.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Parse: %v", err)
	}
	for _, is := range ve.Issues {
		if is.Severity == fhir.Error && !strings.HasPrefix(is.Message, "resource type Location is not supported") &&
			!strings.HasPrefix(is.Message, "resource type HealthcareService is not supported") {
			t.Errorf("Parse: %v", is)
		}
	}
}

func TestDirectoryHours(t *testing.T) {
	type opening struct {
		Days        []string `json:"daysOfWeek"`
		AllDay      bool     `json:"allDay"`
		Open, Close string
	}
	for _, tc := range []struct {
		name, hours string
		want        []opening // nil: not expressible
		keepText    bool      // the text is kept in availabilityExceptions
	}{
		{"weekdays", "月〜金 9:00-17:00", []opening{{Days: []string{"mon", "tue", "wed", "thu", "fri"}, Open: "09:00:00", Close: "17:00:00"}}, false},
		{"full width, two groups", "月～金　９：００～１８：００、土 9:00-12:00", []opening{
			{Days: []string{"sat"}, Open: "09:00:00", Close: "12:00:00"},
			{Days: []string{"mon", "tue", "wed", "thu", "fri"}, Open: "09:00:00", Close: "18:00:00"},
		}, false},
		{"lunch break", "平日 8:30-12:00/14:00-17:30 土曜 8:30-12:00", []opening{
			{Days: []string{"mon", "tue", "wed", "thu", "fri", "sat"}, Open: "08:30:00", Close: "12:00:00"},
			{Days: []string{"mon", "tue", "wed", "thu", "fri"}, Open: "14:00:00", Close: "17:30:00"},
		}, false},
		{"closed day", "月曜日〜土曜日 9時-18時半、木曜休診", []opening{{Days: []string{"mon", "tue", "wed", "fri", "sat"}, Open: "09:00:00", Close: "18:30:00"}}, false},
		{"later group replaces", "月〜金 9:00-18:00、水 9:00-12:00", []opening{
			{Days: []string{"wed"}, Open: "09:00:00", Close: "12:00:00"},
			{Days: []string{"mon", "tue", "thu", "fri"}, Open: "09:00:00", Close: "18:00:00"},
		}, false},
		{"wraps over the week end", "日-火 10:00-16:00", []opening{{Days: []string{"mon", "tue", "sun"}, Open: "10:00:00", Close: "16:00:00"}}, false},
		{"all day", "年中無休 24時間", []opening{{Days: []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"}, AllDay: true}}, false},
		{"holidays closed", "月・水・金 9:00-12:00 土日祝休診", []opening{{Days: []string{"mon", "wed", "fri"}, Open: "09:00:00", Close: "12:00:00"}}, true},
		{"holiday hours", "月〜金 9:00-17:00、祝日 9:00-12:00", []opening{{Days: []string{"mon", "tue", "wed", "thu", "fri"}, Open: "09:00:00", Close: "17:00:00"}}, true},
		{"morning words", "午前9:00-12:00", nil, true},
		{"overnight", "月〜金 17:00-9:00", nil, true},
		{"times first", "24時間年中無休", nil, true},
		{"days without hours", "月、水 9:00-12:00", nil, true},
		{"only closures", "休診日：日・祝", nil, true},
		{"empty", "", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := renkei.DirectoryEntry{Institution: renkei.Institution{ID: "x", Name: "x", Kind: renkei.Clinic}, Profile: renkei.Profile{Hours: tc.hours}}
			b, _ := exportDirectory(t, []renkei.DirectoryEntry{e})
			loc, svc := b.find(t, "Location", "x"), b.find(t, "HealthcareService", "x")
			var got, gotSvc []opening
			for _, h := range dirList(loc["hoursOfOperation"]) {
				h := h.(map[string]any)
				o := opening{AllDay: h["allDay"] == true, Open: dirStr(h["openingTime"]), Close: dirStr(h["closingTime"])}
				for _, d := range h["daysOfWeek"].([]any) {
					o.Days = append(o.Days, d.(string))
				}
				got = append(got, o)
			}
			for _, h := range dirList(svc["availableTime"]) {
				h := h.(map[string]any)
				o := opening{AllDay: h["allDay"] == true, Open: dirStr(h["availableStartTime"]), Close: dirStr(h["availableEndTime"])}
				for _, d := range h["daysOfWeek"].([]any) {
					o.Days = append(o.Days, d.(string))
				}
				gotSvc = append(gotSvc, o)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("hoursOfOperation (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(got, gotSvc); diff != "" {
				t.Errorf("availableTime differs from hoursOfOperation (-loc +svc):\n%s", diff)
			}
			wantText := ""
			if tc.keepText {
				wantText = tc.hours
			}
			if loc["availabilityExceptions"] != nil && loc["availabilityExceptions"] != wantText || loc["availabilityExceptions"] == nil && wantText != "" {
				t.Errorf("availabilityExceptions = %v, want %q", loc["availabilityExceptions"], wantText)
			}
			if svc["availabilityExceptions"] != loc["availabilityExceptions"] {
				t.Errorf("service availabilityExceptions %v, location %v", svc["availabilityExceptions"], loc["availabilityExceptions"])
			}
		})
	}
}

func dirList(v any) []any {
	l, _ := v.([]any)
	return l
}

func dirStr(v any) string {
	s, _ := v.(string)
	return s
}

func TestDirectoryBundleRefuses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(e *renkei.DirectoryEntry)
		twice  bool
	}{
		{"ID not a FHIR id", func(e *renkei.DirectoryEntry) { e.Institution.ID = "甲病院" }, false},
		{"ID twice", func(e *renkei.DirectoryEntry) {}, true},
		{"no name", func(e *renkei.DirectoryEntry) { e.Institution.Name = " " }, false},
		{"医療機関コード", func(e *renkei.DirectoryEntry) { e.Institution.Code = "99123" }, false},
		{"latitude", func(e *renkei.DirectoryEntry) { e.Profile.Latitude = 135.5 }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := renkei.DirectoryEntry{Institution: renkei.Institution{ID: "a", Name: "甲病院", Kind: renkei.Hospital}}
			tc.change(&e)
			entries := []renkei.DirectoryEntry{e}
			if tc.twice {
				entries = append(entries, e)
			}
			_, err := fhir.DirectoryBundle(entries, dirNow, time.Hour)
			if renkei.ErrorKind(err) != renkei.Invalid {
				t.Errorf("err = %v, want kind invalid", err)
			}
		})
	}
}
