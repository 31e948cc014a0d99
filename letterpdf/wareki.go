package letterpdf

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// jst is Japan Standard Time. Japan has no daylight saving time, so a fixed zone is exact and needs no tzdata.
var jst = time.FixedZone("JST", 9*60*60)

// eras lists the Japanese eras (元号) with the Gregorian date of their first day, newest first. The start dates are
// the official ones: 明治 from 1868-10-23 (明治改元の詔, 慶応4年9月8日, counted in the Gregorian calendar), 大正 from
// 1912-07-30, 昭和 from 1926-12-25, 平成 from 1989-01-08, 令和 from 2019-05-01.
var eras = []struct {
	name    string
	y, m, d int
}{
	{"令和", 2019, 5, 1},
	{"平成", 1989, 1, 8},
	{"昭和", 1926, 12, 25},
	{"大正", 1912, 7, 30},
	{"明治", 1868, 10, 23},
}

// Wareki formats a date as Japanese calendar (和暦) text, e.g. "令和8年11月27日", with "元年" for the first year of an
// era ("令和元年5月1日"). Dates before 明治 (1868-10-23) have no era here and come back in Western form
// ("1868年10月22日"). The date is taken as written: y, m and d are a calendar date, not converted between zones.
func Wareki(y, m, d int) string {
	era, ey := eraOf(y, m, d)
	if era == "" {
		return fmt.Sprintf("%d年%d月%d日", y, m, d)
	}
	return fmt.Sprintf("%s%s年%d月%d日", era, eraYear(ey), m, d)
}

// eraOf returns the era of a date and the year within it, or "" before 明治.
func eraOf(y, m, d int) (string, int) {
	key := y*10000 + m*100 + d
	for _, e := range eras {
		if key >= e.y*10000+e.m*100+e.d {
			return e.name, y - e.y + 1
		}
	}
	return "", 0
}

func eraYear(n int) string {
	if n == 1 {
		return "元"
	}
	return strconv.Itoa(n)
}

// letterDate is the date of a letter as printed at its top: the day in Japan, in 和暦.
func letterDate(t time.Time) string {
	t = t.In(jst)
	return Wareki(t.Year(), int(t.Month()), t.Day())
}

// parseBirthDate reads a birth date as DICOM writes it (YYYYMMDD) or as ISO 8601 (YYYY-MM-DD).
func parseBirthDate(s string) (y, m, d int, ok bool) {
	s = strings.TrimSpace(strings.ReplaceAll(s, "-", ""))
	if len(s) != 8 {
		return 0, 0, 0, false
	}
	t, err := time.Parse("20060102", s)
	if err != nil {
		return 0, 0, 0, false
	}
	return t.Year(), int(t.Month()), t.Day(), true
}

// ageAt returns the age in completed years, on the day on, of a person born on y-m-d. Someone born on 29 February
// turns a year older on 1 March in common years here; the legal rule (the day before the birthday) makes no
// difference to a printed age except on that one day.
func ageAt(y, m, d int, on time.Time) int {
	on = on.In(jst)
	age := on.Year() - y
	if int(on.Month()) < m || (int(on.Month()) == m && on.Day() < d) {
		age--
	}
	return age
}

// birthLine formats a birth date as the form prints it: 和暦, the Western year and the age on the letter's date, e.g.
// "昭和25年3月1日(1950年)76歳". A date it cannot read is printed as written.
func birthLine(birth string, on time.Time) string {
	y, m, d, ok := parseBirthDate(birth)
	if !ok {
		return strings.TrimSpace(birth)
	}
	s := Wareki(y, m, d)
	if era, _ := eraOf(y, m, d); era != "" {
		s += fmt.Sprintf("(%d年)", y)
	}
	if age := ageAt(y, m, d, on); age >= 0 {
		s += fmt.Sprintf("%d歳", age)
	}
	return s
}
