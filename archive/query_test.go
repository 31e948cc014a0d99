package archive_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"renkei"
	"renkei/archive"
)

// TestParseMatch checks how one QIDO-RS / C-FIND key becomes a Match (PS3.4 C.2.2.2).
func TestParseMatch(t *testing.T) {
	single := func(kw, v string) renkei.Match { return renkei.Match{Keyword: kw, Kind: renkei.MatchSingle, Value: v} }
	wild := func(kw, v string) renkei.Match {
		return renkei.Match{Keyword: kw, Kind: renkei.MatchWildcard, Value: v}
	}
	list := func(kw string, vs ...string) renkei.Match {
		return renkei.Match{Keyword: kw, Kind: renkei.MatchList, Values: vs}
	}
	rng := func(kw, lo, hi string) renkei.Match {
		return renkei.Match{Keyword: kw, Kind: renkei.MatchRange, Lo: lo, Hi: hi}
	}

	cases := []struct {
		name, keyword, value string
		want                 renkei.Match
	}{
		// C.2.2.2.1 single value matching; keys may be keywords or 8 hex digits.
		{"single value", "PatientID", "P1", single("PatientID", "P1")},
		{"hex tag becomes keyword", "00100020", "P1", single("PatientID", "P1")},
		{"lower-case hex tag", "0020000d", "1.2.3", single("StudyInstanceUID", "1.2.3")},
		{"surrounding spaces trimmed", "AccessionNumber", "  A1 ", single("AccessionNumber", "A1")},
		{"issuer", "IssuerOfPatientID", "HOSP_A", single("IssuerOfPatientID", "HOSP_A")},
		{"series number", "SeriesNumber", "3", single("SeriesNumber", "3")},
		{"SOP class", "SOPClassUID", "1.2.840.10008.5.1.4.1.1.2", single("SOPClassUID", "1.2.840.10008.5.1.4.1.1.2")},
		// C.2.2.2.4 wildcard matching.
		{"wildcard star", "AccessionNumber", "A*", wild("AccessionNumber", "A*")},
		{"wildcard question mark", "PatientID", "P?1", wild("PatientID", "P?1")},
		{"text value list", "AccessionNumber", `A1\A2`, list("AccessionNumber", "A1", "A2")},
		// C.2.2.2.2 list of UID matching, with QIDO-RS's comma form (PS3.18 8.3.4.1) and DICOM's backslash.
		{"UID", "StudyInstanceUID", "1.2.3", single("StudyInstanceUID", "1.2.3")},
		{"UID list with commas", "StudyInstanceUID", "1.2.3,1.2.4", list("StudyInstanceUID", "1.2.3", "1.2.4")},
		{"UID list with backslashes", "StudyInstanceUID", `1.2.3\1.2.4`, list("StudyInstanceUID", "1.2.3", "1.2.4")},
		{"UID list mixed", "SeriesInstanceUID", `1.2.3\1.2.4,1.2.5`, list("SeriesInstanceUID", "1.2.3", "1.2.4", "1.2.5")},
		{"modalities in study, one", "ModalitiesInStudy", "CT", list("ModalitiesInStudy", "CT")},
		{"modalities in study, several", "ModalitiesInStudy", `CT\MR`, list("ModalitiesInStudy", "CT", "MR")},
		{"modalities in study, commas", "ModalitiesInStudy", "CT,MR", list("ModalitiesInStudy", "CT", "MR")},
		// C.2.2.2.5 range matching of dates and times.
		{"date", "StudyDate", "20240105", single("StudyDate", "20240105")},
		{"retired date form", "StudyDate", "2024.01.05", single("StudyDate", "20240105")},
		{"date range", "StudyDate", "20240101-20240131", rng("StudyDate", "20240101", "20240131")},
		{"date range open start", "StudyDate", "-20240131", rng("StudyDate", "", "20240131")},
		{"date range open end", "StudyDate", "20240101-", rng("StudyDate", "20240101", "")},
		{"birth date range", "PatientBirthDate", "19600101-19691231", rng("PatientBirthDate", "19600101", "19691231")},
		{"single time covers its minute", "StudyTime", "1015", rng("StudyTime", "101500", "101559.999999")},
		{"single time covers its hour", "StudyTime", "10", rng("StudyTime", "100000", "105959.999999")},
		{"single time to the second", "StudyTime", "101530", rng("StudyTime", "101530", "101530.999999")},
		{"time with fraction", "StudyTime", "101530.25", rng("StudyTime", "101530.25", "101530.25")},
		{"retired time form", "StudyTime", "10:15", rng("StudyTime", "101500", "101559.999999")},
		{"time range", "StudyTime", "0800-1200", rng("StudyTime", "080000", "120059.999999")},
		{"time range open start", "StudyTime", "-1200", rng("StudyTime", "", "120059.999999")},
		{"time range open end", "SeriesTime", "0800-", rng("SeriesTime", "080000", "")},
		// PN: folded so that width, kana script, case, spacing and variant kanji do not matter.
		{"name wildcard, case folded", "PatientName", "yamada*", wild("PatientName", "YAMADA*")},
		{"name exact", "PatientName", "Yamada^Tarou", single("PatientName", "YAMADA^TAROU")},
		{"name trailing carets", "PatientName", "Yamada^^", single("PatientName", "YAMADA")},
		{"name half-width katakana", "PatientName", "ﾔﾏﾀﾞ*", wild("PatientName", "ヤマダ*")},
		{"name hiragana", "PatientName", "やまだ^たろう", single("PatientName", "ヤマダ^タロウ")},
		{"name variant kanji", "PatientName", "髙橋*", wild("PatientName", "高橋*")},
		{"name ideographic space", "PatientName", "山田　太郎", single("PatientName", "山田太郎")},
		{"name question mark", "PatientName", "山?", wild("PatientName", "山?")},
		{"referring physician", "ReferringPhysicianName", "suzuki*", wild("ReferringPhysicianName", "SUZUKI*")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok, err := archive.ParseMatch(tc.keyword, tc.value)
			if err != nil || !ok {
				t.Fatalf("ParseMatch(%q, %q) = ok %v, err %v; want a match", tc.keyword, tc.value, ok, err)
			}
			if got.Kind == renkei.MatchList || got.Kind == renkei.MatchRange {
				got.Value = "" // Value means nothing for lists and ranges
			}
			if d := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); d != "" {
				t.Errorf("ParseMatch(%q, %q) (-want +got):\n%s", tc.keyword, tc.value, d)
			}
		})
	}
}

// TestParseMatchUniversal checks C.2.2.2.3: an empty value (or a lone '*') matches everything, so nothing is matched.
func TestParseMatchUniversal(t *testing.T) {
	for _, tc := range []struct{ keyword, value string }{
		{"PatientName", ""},
		{"PatientName", "*"},
		{"PatientID", "   "},
		{"StudyInstanceUID", ""},
		{"StudyDate", ""},
		{"StudyDate", "-"},
		{"StudyTime", "-"},
		{"ModalitiesInStudy", ""},
		{"00100010", ""},
	} {
		t.Run(tc.keyword+"="+tc.value, func(t *testing.T) {
			m, ok, err := archive.ParseMatch(tc.keyword, tc.value)
			if err != nil || ok {
				t.Errorf("ParseMatch(%q, %q) = %+v, ok %v, err %v; want universal matching (ok false, no error)", tc.keyword, tc.value, m, ok, err)
			}
		})
	}
}

// TestParseMatchInvalid checks that malformed keys are Invalid errors whose message says what is wrong.
func TestParseMatchInvalid(t *testing.T) {
	cases := []struct {
		name, keyword, value string
		wantIn               string // in the user message
	}{
		{"unknown keyword", "PatientNmae", "X", "unknown attribute"},
		{"unknown keyword with empty value", "NoSuchAttribute", "", "unknown attribute"},
		{"UID with a letter", "StudyInstanceUID", "1.2.abc", "not a valid UID"},
		{"UID with leading zero", "StudyInstanceUID", "1.02.3", "not a valid UID"},
		{"bad UID in a list", "SOPInstanceUID", "1.2.3,1..4", "not a valid UID"},
		{"UID too long", "SeriesInstanceUID", "1." + strings.Repeat("1", 64), "not a valid UID"},
		{"date with dashes", "StudyDate", "2024-01-05", "not a date"},
		{"date in words", "StudyDate", "yesterday", "not a date"},
		{"date too short", "StudyDate", "2024010", "not a date"},
		{"month 13", "StudyDate", "20241301", "not a date"},
		{"February 30", "StudyDate", "20240230", "not a date"},
		{"range end not a date", "StudyDate", "20240101-2024", "not a date"},
		{"time in words", "StudyTime", "noon", "not a time"},
		{"hour 25", "StudyTime", "2500", "not a time"},
		{"time range start not a time", "StudyTime", "8am-1200", "not a time"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, ok, err := archive.ParseMatch(tc.keyword, tc.value)
			if err == nil {
				t.Fatalf("ParseMatch(%q, %q) = %+v, ok %v; want an error", tc.keyword, tc.value, m, ok)
			}
			if k := renkei.ErrorKind(err); k != renkei.Invalid {
				t.Errorf("error kind %v, want invalid: %v", k, err)
			}
			if msg := renkei.ErrorMessage(err); !strings.Contains(msg, tc.wantIn) {
				t.Errorf("message %q does not say %q", msg, tc.wantIn)
			}
		})
	}
}

// TestNameKeys checks the folded search keys stored for a person name: each component group with and without its
// '^', and each component alone behind \x01 for fuzzy matching.
func TestNameKeys(t *testing.T) {
	cases := []struct {
		name, pn string
		want     []string
	}{
		{"empty", "", nil},
		{"PS3.5 H.3.1", "Yamada^Tarou=山田^太郎=やまだ^たろう", []string{
			"YAMADA^TAROU", "YAMADATAROU", "\x01YAMADA", "\x01TAROU",
			"山田^太郎", "山田太郎", "\x01山田", "\x01太郎",
			"ヤマダ^タロウ", "ヤマダタロウ", "\x01ヤマダ", "\x01タロウ",
		}},
		{"PS3.5 H.3.2: half-width and hiragana groups meet", "ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう", []string{
			"ヤマダ^タロウ", "ヤマダタロウ", "\x01ヤマダ", "\x01タロウ",
			"山田^太郎", "山田太郎", "\x01山田", "\x01太郎",
		}},
		{"variant kanji folded", "Takahashi^Hanako=髙橋^花子=たかはし^はなこ", []string{
			"TAKAHASHI^HANAKO", "TAKAHASHIHANAKO", "\x01TAKAHASHI", "\x01HANAKO",
			"高橋^花子", "高橋花子", "\x01高橋", "\x01花子",
			"タカハシ^ハナコ", "タカハシハナコ", "\x01タカハシ", "\x01ハナコ",
		}},
		{"empty phonetic group", "Wang^XiaoDong=王^小東=", []string{
			"WANG^XIAODONG", "WANGXIAODONG", "\x01WANG", "\x01XIAODONG",
			"王^小東", "王小東", "\x01王", "\x01小東",
		}},
		{"ideographic only", "=山田^太郎", []string{"山田^太郎", "山田太郎", "\x01山田", "\x01太郎"}},
		{"trailing empty components", "Yamada^Tarou^^^", []string{"YAMADA^TAROU", "YAMADATAROU", "\x01YAMADA", "\x01TAROU"}},
		{"family name only", "Yamada", []string{"YAMADA", "\x01YAMADA"}},
		{"space inside a component", "山田 太郎", []string{"山田太郎", "\x01山田太郎"}},
		{"Latin-1", "Buc^Jérôme", []string{"BUC^JÉRÔME", "BUCJÉRÔME", "\x01BUC", "\x01JÉRÔME"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if d := cmp.Diff(tc.want, archive.NameKeys(tc.pn)); d != "" {
				t.Errorf("NameKeys(%q) (-want +got):\n%s", tc.pn, d)
			}
		})
	}
}

// TestNameKeysMeetQuery checks the promise the two halves make together: a name query, parsed, equals one of the
// stored keys of each spelling of the same name.
func TestNameKeysMeetQuery(t *testing.T) {
	stored := []string{
		"Yamada^Tarou=山田^太郎=やまだ^たろう",
		"ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう",
		"ヤマダ^タロウ",
	}
	for _, q := range []string{"山田^太郎", "ヤマダ^タロウ", "やまだ^たろう", "ﾔﾏﾀﾞ^ﾀﾛｳ", "ヤマダ タロウ", "やまだたろう"} {
		m, ok, err := archive.ParseMatch("PatientName", q)
		if err != nil || !ok {
			t.Fatalf("ParseMatch(PatientName, %q): ok %v, err %v", q, ok, err)
		}
		for _, pn := range stored {
			if q == "山田^太郎" && !strings.Contains(pn, "山田") {
				continue
			}
			found := false
			for _, k := range archive.NameKeys(pn) {
				found = found || k == m.Value
			}
			if !found {
				t.Errorf("query %q (key %q) does not meet any key of %q: %q", q, m.Value, pn, archive.NameKeys(pn))
			}
		}
	}
}
