package fhir

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// 診療時間 (opening hours) as written in Japanese, read into FHIR availableTime / hoursOfOperation.

// hoursSpan is one opening period of the week: the days (FHIR codes, Monday first) open from open to close
// (FHIR time, hh:mm:ss), or all day.
type hoursSpan struct {
	days []string
	hoursPeriod
}

// hoursPeriod is the time part of an hoursSpan.
type hoursPeriod struct {
	allDay      bool
	open, close string
}

var weekdays = []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"}

// hoursOf reads 診療時間 as written in Japan into weekly opening periods: day groups (月〜金, 月・水・金, 平日, 土日祝,
// 毎日, 年中無休, with or without 曜日) each followed by time ranges (9:00-12:00, 9時〜17時半, 24時間) or by 休診 /
// 休み / 定休日 (or "休診日: 日・祝"); full-width digits and the usual dashes and separators are accepted. A later
// group's times replace an earlier group's for its days ("月〜金 9:00-18:00、水 9:00-12:00"). ok is false when any
// part cannot be read (午前, 受付, 第2土曜, …) or nothing opens: the caller then keeps the text. exact is false
// when the text also says what hoursOfOperation cannot hold (hours or closures on holidays): the caller keeps
// the text as well.
func hoursOf(text string) (spans []hoursSpan, exact, ok bool) {
	rs := []rune(foldHours(text))
	var (
		sched [7]struct {
			group  int
			ranges []hoursPeriod
		}
		cur       [7]bool // the days of the current group
		curHol    bool    // the current group names holidays
		group     int     // groups seen
		inGroup   bool    // reading a group's days
		used      bool    // the current group has times or a closure
		closeNext bool    // a closure word came before its days
	)
	exact = true
	closeGroup := func() {
		for d := range 7 {
			if cur[d] {
				sched[d].group, sched[d].ranges = group, nil
			}
		}
		if curHol {
			exact = false // closed on holidays: hoursOfOperation has no holidays
		}
		used = true
	}
	endGroup := func() {
		if inGroup && closeNext {
			closeGroup()
			closeNext = false
		}
		inGroup = false
	}
	has := func(i int, w string) bool { return strings.HasPrefix(string(rs[i:]), w) }
	skip := func(i int, words ...string) int {
		for _, w := range words {
			if has(i, w) {
				return i + utf8.RuneCountInString(w)
			}
		}
		return i
	}
	for i := 0; i < len(rs); {
		r := rs[i]
		switch {
		case strings.ContainsRune("・:は", r): // within a group: 月・水・金, 月〜金：9:00
			i++
			continue
		case strings.ContainsRune(" \t\r\n、,;/。", r):
			endGroup()
			i++
			continue
		case has(i, "診療時間"):
			endGroup()
			i += 4
			continue
		}
		var days []int
		hol := false
		n := 0
		switch {
		case has(i, "年中無休"):
			days, n = []int{0, 1, 2, 3, 4, 5, 6}, 4
		case has(i, "毎日"), has(i, "全日"):
			days, n = []int{0, 1, 2, 3, 4, 5, 6}, 2
		case has(i, "平日"):
			days, n = []int{0, 1, 2, 3, 4}, 2
		case has(i, "祝日"), has(i, "休日"):
			hol, n = true, 2
		case r == '祝':
			hol, n = true, 1
		case slices.Contains(dayRunes, r):
			first := slices.Index(dayRunes, r)
			last := first
			j := skip(i+1, "曜日", "曜")
			if j+1 < len(rs) && rs[j] == '-' && slices.Contains(dayRunes, rs[j+1]) {
				last = slices.Index(dayRunes, rs[j+1])
				j = skip(j+2, "曜日", "曜")
			}
			for d := first; ; d = (d + 1) % 7 {
				days = append(days, d)
				if d == last {
					break
				}
			}
			n = j - i
		}
		if n > 0 {
			if !inGroup {
				if group > 0 && !used {
					return nil, false, false // days with no hours: "月、水 9:00-12:00" is ambiguous
				}
				cur, curHol, used, inGroup = [7]bool{}, false, false, true
				group++
			}
			for _, d := range days {
				cur[d] = true
			}
			curHol = curHol || hol
			i += n
			continue
		}
		if j := skip(i, "休診日", "定休日", "休診", "休業", "休み", "休"); j > i {
			i = j
			if inGroup || (group > 0 && !used) {
				closeGroup()
				inGroup = false
			} else {
				closeNext = true
			}
			continue
		}
		endGroup()
		span := hoursPeriod{allDay: true}
		if has(i, "24時間") {
			i += 4
		} else {
			open, j, ok1 := clockAt(rs, i)
			if !ok1 || j >= len(rs) || rs[j] != '-' {
				return nil, false, false
			}
			closing, k, ok2 := clockAt(rs, j+1)
			if !ok2 || closing <= open {
				return nil, false, false // overnight or empty
			}
			span = hoursPeriod{open: open, close: closing}
			i = k
		}
		if group == 0 || closeNext {
			return nil, false, false // times before any days: which days?
		}
		if curHol {
			exact = false // holiday hours: hoursOfOperation has no holidays
		}
		for d := range 7 {
			if !cur[d] {
				continue
			}
			if sched[d].group != group { // a later group's times replace an earlier one's
				sched[d].group, sched[d].ranges = group, nil
			}
			if !slices.Contains(sched[d].ranges, span) {
				sched[d].ranges = append(sched[d].ranges, span)
			}
		}
		used = true
	}
	endGroup()
	if closeNext || (group > 0 && !used) {
		return nil, false, false // "休診日:" with no days, or days with no hours
	}
	// One span per distinct period, with every day that has it.
	for d := range 7 {
		for _, r := range sched[d].ranges {
			i := slices.IndexFunc(spans, func(s hoursSpan) bool { return s.hoursPeriod == r })
			if i < 0 {
				spans = append(spans, hoursSpan{hoursPeriod: r})
				i = len(spans) - 1
			}
			spans[i].days = append(spans[i].days, weekdays[d])
		}
	}
	if len(spans) == 0 {
		return nil, false, false
	}
	slices.SortFunc(spans, func(a, b hoursSpan) int {
		if a.allDay != b.allDay {
			if a.allDay {
				return -1
			}
			return 1
		}
		return cmp.Or(cmp.Compare(a.open, b.open), cmp.Compare(a.close, b.close), cmp.Compare(slices.Index(weekdays, a.days[0]), slices.Index(weekdays, b.days[0])))
	})
	return spans, exact, true
}

// dayRunes are the days of the week as written, Monday first (the order of weekdays).
var dayRunes = []rune("月火水木金土日")

// clockAt reads a time of day at rs[i:] ("9:00", "09:30", "9時", "9時30分", "9時半") as a FHIR time, 00:00–23:59.
func clockAt(rs []rune, i int) (string, int, bool) {
	digits := func() (int, int) {
		v, n := 0, 0
		for i < len(rs) && n < 2 && rs[i] >= '0' && rs[i] <= '9' {
			v, n, i = v*10+int(rs[i]-'0'), n+1, i+1
		}
		return v, n
	}
	h, n := digits()
	if n == 0 {
		return "", i, false
	}
	m := 0
	switch {
	case i < len(rs) && rs[i] == ':':
		i++
		var k int
		if m, k = digits(); k != 2 {
			return "", i, false
		}
	case i < len(rs) && rs[i] == '時':
		i++
		switch {
		case i < len(rs) && rs[i] == '半':
			m, i = 30, i+1
		case i < len(rs) && rs[i] >= '0' && rs[i] <= '9':
			if m, _ = digits(); i >= len(rs) || rs[i] != '分' {
				return "", i, false
			}
			i++
		}
	default:
		return "", i, false
	}
	if h > 23 || m > 59 {
		return "", i, false
	}
	return fmt.Sprintf("%02d:%02d:00", h, m), i, true
}

// foldHours maps full-width ASCII to ASCII, the ideographic space to a space and the dashes and tildes written
// between times or days to '-'.
func foldHours(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 0xFF01 && r <= 0xFF5E:
			r -= 0xFEE0
		case r == '\u3000':
			return ' '
		}
		if strings.ContainsRune("~〜\u2010\u2013\u2014\u2015\u2212ー", r) {
			return '-'
		}
		return r
	}, s)
}
