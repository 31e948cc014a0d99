package sqlstore_test

import (
	"context"
	"fmt"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"

	"renkei"
	"renkei/sqlstore"
)

func TestCombinedDateTimeMatching(t *testing.T) { eachDB(t, testCombinedDateTimeMatching) }

// testCombinedDateTimeMatching checks range matching of a date and its time combined (PS3.4 C.2.2.2.5.1) against
// matching them one by one, for the three pairs the index holds, around the standard's own example: Study Date
// 20060705-20060707 with Study Time 1000-1800 is from July 5 at 10:00 to July 7 at 18:00.
func testCombinedDateTimeMatching(t *testing.T, db *sqlstore.DB) {
	ctx := context.Background()
	// Each study's one series holds the same date and time as the study, as series and procedure step start.
	moments := map[string][2]string{
		"a": {"20060704", "230000"}, // the day before
		"b": {"20060705", "093000"}, // the first day, before the first time
		"c": {"20060705", "100000"}, // the first moment
		"d": {"20060705", ""},       // the first day, time unknown: the whole day
		"e": {"20060706", "030000"}, // the middle day, outside the times
		"f": {"20060706", "200000"},
		"g": {"20060707", "180059.5"}, // the last minute (1800 covers 18:00:00 to 18:00:59.999999)
		"h": {"20060707", "181000"},   // the last day, after the last time
		"i": {"20060707", ""},
		"j": {"20060708", "090000"}, // the day after
		"k": {"", "120000"},         // no date
	}
	n := 0
	for name, m := range moments {
		n++
		uid := fmt.Sprintf("9.%d", n)
		in := inst("P"+name, uid, uid+".1", uid+".1.1", "CT", "k"+name)
		in.StudyDate, in.StudyTime = m[0], m[1]
		in.SeriesDate, in.SeriesTime = m[0], m[1]
		in.PPSStartDate, in.PPSStartTime = m[0], m[1]
		in.StudyDescription = name
		if _, _, err := db.Insert(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	rng := func(kw, lo, hi string) renkei.Match {
		return renkei.Match{Keyword: kw, Kind: renkei.MatchRange, Lo: lo, Hi: hi}
	}
	tests := []struct {
		name       string
		date, time [2]string // normalised bounds as archive.ParseMatch gives them; both empty: universal
		single     bool      // the date is a single value (date[0])
		combined   bool
		want       string // the studies matched, by name
	}{
		{"the standard's example", [2]string{"20060705", "20060707"}, [2]string{"100000", "180059.999999"}, false, true, "cdefgi"},
		{"the same without combined matching", [2]string{"20060705", "20060707"}, [2]string{"100000", "180059.999999"}, false, false, "cg"},
		{"open end", [2]string{"20060705", ""}, [2]string{"100000", "180059.999999"}, false, true, "cdefghij"},
		{"open start", [2]string{"", "20060707"}, [2]string{"100000", "180059.999999"}, false, true, "abcdefgi"},
		{"one day", [2]string{"20060705", ""}, [2]string{"100000", "180059.999999"}, true, true, "cd"},
		{"times from midnight", [2]string{"20060705", "20060707"}, [2]string{"", "180059.999999"}, false, true, "bcdefgi"},
		{"times to midnight", [2]string{"20060705", "20060707"}, [2]string{"100000", ""}, false, true, "cdefghi"},
		{"across midnight", [2]string{"20060705", "20060706"}, [2]string{"220000", "060059.999999"}, false, true, "de"},
		{"dates alone", [2]string{"20060705", "20060707"}, [2]string{}, false, true, "bcdefghi"},
		{"times alone", [2]string{}, [2]string{"100000", "180059.999999"}, false, true, "cgk"},
	}
	pairs := []struct {
		date, time string
		level      renkei.QueryLevel
	}{
		{"StudyDate", "StudyTime", renkei.StudyLevel},
		{"SeriesDate", "SeriesTime", renkei.SeriesLevel},
		{"PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime", renkei.SeriesLevel},
	}
	for _, p := range pairs {
		for _, tc := range tests {
			t.Run(p.date+"/"+tc.name, func(t *testing.T) {
				q := &renkei.Query{Level: p.level, CombinedDateTime: tc.combined}
				switch {
				case tc.single:
					q.Matches = append(q.Matches, renkei.Match{Keyword: p.date, Kind: renkei.MatchSingle, Value: tc.date[0]})
				case tc.date != [2]string{}:
					q.Matches = append(q.Matches, rng(p.date, tc.date[0], tc.date[1]))
				}
				if tc.time != [2]string{} {
					q.Matches = append(q.Matches, rng(p.time, tc.time[0], tc.time[1]))
				}
				var got []string
				if p.level == renkei.StudyLevel {
					for _, st := range studies(t, db, q) {
						got = append(got, st.StudyDescription)
					}
				} else {
					recs, err := db.QuerySeries(ctx, q)
					if err != nil {
						t.Fatal(err)
					}
					for _, se := range recs {
						got = append(got, se.Study.StudyDescription)
					}
				}
				sort.Strings(got)
				var want []string
				for _, r := range tc.want {
					want = append(want, string(r))
				}
				if d := cmp.Diff(want, got); d != "" {
					t.Errorf("(-want +got):\n%s", d)
				}
			})
		}
	}
}
