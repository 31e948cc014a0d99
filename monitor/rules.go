package monitor

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"renkei"
)

// The rules' names, as alerts carry them (and the web app translates them).
const (
	RuleBulkAccess          = "bulk-access"
	RuleBulkExport          = "bulk-export"
	RuleUnusualHours        = "unusual-hours"
	RuleNoRelation          = "no-relation"
	RuleBreakGlass          = "break-glass-unreviewed"
	RuleLoginFailuresUser   = "login-failures-user"
	RuleLoginFailuresSource = "login-failures-source"
	RulePasswordSpraying    = "password-spraying"
	RuleUnknownAE           = "unknown-ae"
	RuleEnumeration         = "uid-enumeration"
	RuleTokenAddresses      = "token-two-addresses"
	RuleSelfGrant           = "self-grant"
	RuleNewNetwork          = "new-network"
)

// hit is one rule's finding on one event: the alert it raises or adds to.
type hit struct {
	renkei.Alert
}

// item is one event in a sliding window: when, which, and the value the window counts distinct (a patient, a study,
// an address, a login).
type item struct {
	at  time.Time
	seq int64
	key string
}

// window holds the events of one subject within a rule's period and counts their distinct keys.
type window struct {
	items  []item
	keys   map[string]int
	raised bool // the count is at or above the threshold and its alert was raised
}

func (w *window) add(it item, period time.Duration) {
	if w.keys == nil {
		w.keys = map[string]int{}
	}
	w.items = append(w.items, it)
	w.keys[it.key]++
	w.prune(it.at, period)
}

// prune drops what is older than period before now.
func (w *window) prune(now time.Time, period time.Duration) {
	cut := now.Add(-period)
	i := 0
	for i < len(w.items) && w.items[i].at.Before(cut) {
		k := w.items[i].key
		if w.keys[k]--; w.keys[k] == 0 {
			delete(w.keys, k)
		}
		i++
	}
	if i > 0 {
		w.items = slices.Delete(w.items, 0, i)
	}
}

func (w *window) seqs() []int64 {
	out := make([]int64, len(w.items))
	for i, it := range w.items {
		out[i] = it.seq
	}
	return out
}

func (w *window) distinct() int { return len(w.keys) }

// windows is a rule's windows by subject.
type windows map[string]*window

func (ws windows) get(subject string) *window {
	w := ws[subject]
	if w == nil {
		w = &window{}
		ws[subject] = w
	}
	return w
}

// sweep drops the windows with nothing left in period, so that memory follows activity, not history.
func (ws windows) sweep(now time.Time, period time.Duration) {
	for k, w := range ws {
		w.prune(now, period)
		if len(w.items) == 0 {
			delete(ws, k)
		}
	}
}

// profile is what the unusual-hours rule learned of one user: on how many days, and in which hours of the day, they
// were active.
type profile struct {
	Hours    [24]int `json:"hours"`
	Days     int     `json:"days"`
	LastDay  int64   `json:"lastDay"`
	LastSlot int64   `json:"lastSlot"`
	// Networks counts the user's successful logins per network (IPv4 /24, IPv6 /48); Logins all of them.
	Networks map[string]int `json:"networks,omitempty"`
	Logins   int            `json:"logins,omitempty"`
}

// Relations tells whether an institution had a reason to see another institution's patient (sqlstore.DB).
type Relations interface {
	Related(ctx context.Context, institution, user, dataInstitution int64, patient renkei.PatientKey, at time.Time) (bool, error)
}

type relKey struct {
	institution, user, dataInstitution int64
	patient                            renkei.PatientKey
}

// engine evaluates the rules on events in Seq order. It is used by one goroutine.
type engine struct {
	cfg Config
	loc *time.Location
	rel Relations

	bulk, export, failUser, failSource, sprayAddr, ae, denied, tokens windows
	sprayRegion                                                       window
	profiles                                                          map[int64]*profile
	known                                                             []knownNetwork
	related                                                           map[relKey]time.Time // positive answers, until
	lastSweep                                                         time.Time
}

func newEngine(cfg Config, rel Relations) (*engine, error) {
	loc, err := cfg.location()
	if err != nil {
		return nil, err
	}
	known, err := cfg.knownNetworks()
	if err != nil {
		return nil, err
	}
	return &engine{cfg: cfg, loc: loc, rel: rel, known: known, bulk: windows{}, export: windows{}, failUser: windows{}, failSource: windows{},
		sprayAddr: windows{}, ae: windows{}, denied: windows{}, tokens: windows{}, profiles: map[int64]*profile{}, related: map[relKey]time.Time{}}, nil
}

// maxWindow is the longest period any rule looks back: after a restart the monitor reads this much of the trail
// again to fill its windows.
func (g *engine) maxWindow() time.Duration {
	c := g.cfg
	return max(c.BulkAccess.Window.D(), c.BulkExport.Window.D(), c.Logins.Window.D(), c.UnknownAE.Window.D(), c.Enumeration.Window.D(),
		c.TokenAddresses.Window.D())
}

// actorSubject names the actor of an event: "user:12", "token:3", "ae:CT1".
func actorSubject(e *renkei.AuditEvent) string {
	switch e.ActorKind {
	case renkei.UserPrincipal, renkei.TokenPrincipal:
		if e.ActorID != 0 {
			return fmt.Sprintf("%s:%d", e.ActorKind, e.ActorID)
		}
	}
	return string(e.ActorKind) + ":" + e.Actor
}

// host is the address part of a source: "192.0.2.7" of "192.0.2.7", "192.0.2.7:5120" or "CT1@192.0.2.7:5120".
func host(source string) string {
	if i := strings.LastIndexByte(source, '@'); i >= 0 {
		source = source[i+1:]
	}
	if h, _, err := net.SplitHostPort(source); err == nil {
		return h
	}
	return source
}

func patientKey(inst int64, p renkei.PatientKey) string {
	return fmt.Sprintf("%d|%s|%s", inst, p.Issuer, p.ID)
}

func minutes(d time.Duration) string {
	if d >= time.Hour && d%time.Hour == 0 {
		return fmt.Sprintf("%d時間", d/time.Hour)
	}
	return fmt.Sprintf("%d分", d/time.Minute)
}

func minutesEn(d time.Duration) string {
	if d >= time.Hour && d%time.Hour == 0 {
		if d == time.Hour {
			return "an hour"
		}
		return fmt.Sprintf("%d hours", d/time.Hour)
	}
	return fmt.Sprintf("%d minutes", d/time.Minute)
}

// newHit starts an alert about the event's actor.
func newHit(rule, severity, subject string, e *renkei.AuditEvent) hit {
	return hit{renkei.Alert{Rule: rule, Severity: severity, Subject: subject, Institution: e.Institution, Actor: e.Actor, ActorKind: e.ActorKind,
		ActorID: e.ActorID, Source: host(e.Source), FirstAt: e.Time, LastAt: e.Time, Count: 1, Events: []int64{e.Seq}}}
}

// threshold adds the event to a subject's window and, when its distinct count reaches n, returns the seqs to report:
// the whole window the first time, then each further event. nil: nothing to report.
func threshold(w *window, it item, period time.Duration, n int) ([]int64, int) {
	w.add(it, period)
	if n <= 0 || w.distinct() < n {
		w.raised = false
		return nil, 0
	}
	if !w.raised {
		w.raised = true
		return w.seqs(), len(w.items)
	}
	return []int64{it.seq}, 1
}

// evaluate runs every rule on e. raise false (events whose alerts are already committed) only fills the windows;
// learn false leaves the learned profiles alone (they already include e).
func (g *engine) evaluate(ctx context.Context, e *renkei.AuditEvent, raise, learn bool) ([]hit, error) {
	var hits []hit
	add := func(h hit, seqs []int64, count int) {
		if raise && seqs != nil {
			h.Events, h.Count = seqs, count
			hits = append(hits, h)
		}
	}
	c := &g.cfg
	success := e.Outcome == renkei.OutcomeSuccess
	if e.Time.Sub(g.lastSweep) > time.Minute {
		g.sweep(e.Time)
	}
	user := e.ActorKind == renkei.UserPrincipal && e.Role != renkei.PatientRole

	switch {
	case e.Action == renkei.ActionRead && success && user && e.Patient.ID != "":
		n := c.BulkAccess.Patients
		if r, ok := c.BulkAccess.PerRole[string(e.Role)]; ok {
			n = r
		}
		w := g.bulk.get(actorSubject(e))
		seqs, count := threshold(w, item{e.Time, e.Seq, patientKey(e.DataInstitution, e.Patient)}, c.BulkAccess.Window.D(), n)
		h := newHit(RuleBulkAccess, renkei.SeverityHigh, actorSubject(e), e)
		h.Explanation = fmt.Sprintf("%s(%s)が%sのうちに%d人の患者の画像・記録を開きました(しきい値 %d人)。業務で必要な閲覧だったか、本人と上司に確認してください。",
			e.Actor, roleJa(e.Role), minutes(c.BulkAccess.Window.D()), w.distinct(), n)
		h.ExplanationEn = fmt.Sprintf("%s (%s) opened the images or records of %d different patients within %s (threshold %d). Check with them and their superior that their work needed it.",
			e.Actor, e.Role, w.distinct(), minutesEn(c.BulkAccess.Window.D()), n)
		add(h, seqs, count)

	case e.Action == renkei.ActionExport && success && (user || e.ActorKind == renkei.TokenPrincipal):
		n := c.BulkExport.Studies
		if e.ActorKind == renkei.TokenPrincipal {
			n = 0
			if c.BulkExport.IncludeTokens || c.BulkExport.TokenStudies > 0 {
				n = c.BulkExport.TokenStudies
			}
		}
		w := g.export.get(actorSubject(e))
		seqs, count := threshold(w, item{e.Time, e.Seq, patientKey(e.DataInstitution, e.Patient) + "|" + e.Study}, c.BulkExport.Window.D(), n)
		h := newHit(RuleBulkExport, renkei.SeverityHigh, actorSubject(e), e)
		h.Explanation = fmt.Sprintf("%sが%sのうちに%d件の検査をDICOMファイルとしてダウンロードしました(しきい値 %d件)。持ち出しの目的と持ち出し先を確認してください。",
			e.Actor, minutes(c.BulkExport.Window.D()), w.distinct(), n)
		h.ExplanationEn = fmt.Sprintf("%s downloaded %d different studies as DICOM files within %s (threshold %d). Check why, and where the copies went.",
			e.Actor, w.distinct(), minutesEn(c.BulkExport.Window.D()), n)
		add(h, seqs, count)

	case e.Action == renkei.ActionLogin && !success:
		period := c.Logins.Window.D()
		login := strings.ToLower(e.Actor)
		addr := host(e.Source)
		// Per login name: the account is being guessed (or its owner forgot the password).
		w := g.failUser.get(login)
		seqs, count := threshold(w, item{e.Time, e.Seq, fmt.Sprint(e.Seq)}, period, c.Logins.PerUser)
		h := newHit(RuleLoginFailuresUser, renkei.SeverityMedium, "login:"+login, e)
		h.Explanation = fmt.Sprintf("ログイン名「%s」で%sのうちに%d回ログインに失敗しました(パスワードまたは認証コード)。本人の入力ミスでなければ、このアカウントが狙われています。",
			e.Actor, minutes(period), w.distinct())
		h.ExplanationEn = fmt.Sprintf("Logging in as %q failed %d times within %s (password or authenticator code). Unless the owner mistyped, someone is trying this account.",
			e.Actor, w.distinct(), minutesEn(period))
		add(h, seqs, count)
		// Per source address: one machine trying many times.
		w = g.failSource.get(addr)
		seqs, count = threshold(w, item{e.Time, e.Seq, fmt.Sprint(e.Seq)}, period, c.Logins.PerSource)
		h = newHit(RuleLoginFailuresSource, renkei.SeverityHigh, "addr:"+addr, e)
		h.ActorKind, h.ActorID, h.Actor, h.Institution = "", 0, "", 0
		h.Explanation = fmt.Sprintf("アドレス %s から%sのうちに%d回ログインに失敗しました。院内の端末でなければ、外部からの攻撃の疑いがあります。", addr, minutes(period), w.distinct())
		h.ExplanationEn = fmt.Sprintf("Logins from address %s failed %d times within %s. Unless it is one of your own computers, someone is attacking from there.",
			addr, w.distinct(), minutesEn(period))
		add(h, seqs, count)
		// Different logins from one address: password spraying (a common password tried on many accounts).
		w = g.sprayAddr.get(addr)
		seqs, count = threshold(w, item{e.Time, e.Seq, login}, period, c.Logins.Spraying)
		h = newHit(RulePasswordSpraying, renkei.SeverityHigh, "addr:"+addr, e)
		h.ActorKind, h.ActorID, h.Actor, h.Institution = "", 0, "", 0
		h.Explanation = fmt.Sprintf("アドレス %s から%sのうちに%d個の異なるログイン名でログインが試され、失敗しました。よく使われるパスワードを多くの利用者に試す攻撃(パスワードスプレー)の疑いがあります。",
			addr, minutes(period), w.distinct())
		h.ExplanationEn = fmt.Sprintf("Logins with %d different login names failed from address %s within %s: probably password spraying (a common password tried on many accounts).",
			w.distinct(), addr, minutesEn(period))
		add(h, seqs, count)
		// Different logins from anywhere: spraying spread over many addresses.
		seqs, count = threshold(&g.sprayRegion, item{e.Time, e.Seq, login}, period, c.Logins.SprayingRegion)
		h = newHit(RulePasswordSpraying, renkei.SeverityHigh, "region", e)
		h.ActorKind, h.ActorID, h.Actor, h.Institution, h.Source = "", 0, "", 0, ""
		h.Explanation = fmt.Sprintf("%sのうちに%d個の異なるログイン名でログインが失敗しました(複数のアドレスから)。地域全体へのパスワードスプレー攻撃の疑いがあります。",
			minutes(period), g.sprayRegion.distinct())
		h.ExplanationEn = fmt.Sprintf("Logins with %d different login names failed within %s, from several addresses: probably password spraying against the whole region.",
			g.sprayRegion.distinct(), minutesEn(period))
		add(h, seqs, count)

	case e.Action == renkei.ActionAssociate && !success:
		addr := host(e.Source)
		subject := "ae:" + e.Actor + "@" + addr
		w := g.ae.get(subject)
		seqs, count := threshold(w, item{e.Time, e.Seq, fmt.Sprint(e.Seq)}, c.UnknownAE.Window.D(), c.UnknownAE.Associations)
		h := newHit(RuleUnknownAE, renkei.SeverityMedium, subject, e)
		h.ActorID = 0
		h.Explanation = fmt.Sprintf("登録されていないDICOM機器(AE「%s」、アドレス %s)が接続しようとして拒否されました(%sのうちに%d回)。院内の新しい機器なら登録し、心当たりがなければネットワーク担当者に連絡してください。",
			e.Actor, addr, minutes(c.UnknownAE.Window.D()), w.distinct())
		h.ExplanationEn = fmt.Sprintf("A DICOM device that is not registered (AE %q, address %s) tried to connect and was refused (%d times within %s). If it is a new device of yours, register it; otherwise tell your network staff.",
			e.Actor, addr, w.distinct(), minutesEn(c.UnknownAE.Window.D()))
		add(h, seqs, count)

	case e.Action == renkei.ActionDenied:
		w := g.denied.get(actorSubject(e))
		seqs, count := threshold(w, item{e.Time, e.Seq, fmt.Sprint(e.Seq)}, c.Enumeration.Window.D(), c.Enumeration.Denied)
		h := newHit(RuleEnumeration, renkei.SeverityHigh, actorSubject(e), e)
		h.Explanation = fmt.Sprintf("%sが%sのうちに、存在しないか見る権限のない検査を%d回要求しました。検査のUIDを推測して他施設のデータを探している可能性があります。",
			e.Actor, minutes(c.Enumeration.Window.D()), w.distinct())
		h.ExplanationEn = fmt.Sprintf("%s asked %d times within %s for studies that do not exist or that they may not see: they may be guessing study UIDs to find other institutions' data.",
			e.Actor, w.distinct(), minutesEn(c.Enumeration.Window.D()))
		add(h, seqs, count)
	}

	// An API token seen from more than one address at once: copied, or used by someone else.
	if e.ActorKind == renkei.TokenPrincipal && e.Source != "" && c.TokenAddresses.Addresses > 0 {
		w := g.tokens.get(actorSubject(e))
		seqs, count := threshold(w, item{e.Time, e.Seq, host(e.Source)}, c.TokenAddresses.Window.D(), c.TokenAddresses.Addresses)
		if seqs != nil {
			var addrs []string
			for k := range w.keys {
				addrs = append(addrs, k)
			}
			slices.Sort(addrs)
			h := newHit(RuleTokenAddresses, renkei.SeverityHigh, actorSubject(e), e)
			h.Source = ""
			h.Explanation = fmt.Sprintf("APIトークン「%s」が%sのうちに%d個のアドレス(%s)から使われました。トークンが複製されたか漏れた可能性があります。心当たりがなければトークンを失効させてください。",
				e.Actor, minutes(c.TokenAddresses.Window.D()), len(addrs), strings.Join(addrs, "、"))
			h.ExplanationEn = fmt.Sprintf("API token %q was used from %d addresses (%s) within %s: it may have been copied or leaked. Unless you know why, revoke it.",
				e.Actor, len(addrs), strings.Join(addrs, ", "), minutesEn(c.TokenAddresses.Window.D()))
			add(h, seqs, count)
		}
	}

	if user && success && c.SelfGrant.Enabled {
		if what, ok := selfGrant(e); ok {
			h := newHit(RuleSelfGrant, renkei.SeverityHigh, actorSubject(e), e)
			h.DataInstitution, h.Patient = e.DataInstitution, e.Patient
			h.Explanation = fmt.Sprintf("%s(%s)が自分自身に権限を与える操作をしました: %s。別の管理者が妥当か確認してください。", e.Actor, roleJa(e.Role), what)
			h.ExplanationEn = fmt.Sprintf("%s (%s) gave themselves rights: %s. Another administrator should check that this was proper.", e.Actor, e.Role, what)
			add(h, []int64{e.Seq}, 1)
		}
	}

	if user && success && e.Action == renkei.ActionLogin && c.NewNetwork.MinLogins > 0 {
		if h, ok := g.newNetwork(e, learn); ok {
			add(h, []int64{e.Seq}, 1)
		}
	}

	if user && success && c.UnusualHours.MinDays > 0 && activity(e.Action) {
		if h, ok := g.unusualHour(e, learn); ok {
			add(h, []int64{e.Seq}, 1)
		}
	}

	if raise && c.NoRelation.Enabled && success && e.DataInstitution != 0 && e.DataInstitution != e.Institution && e.Role != renkei.PatientRole &&
		e.Purpose != string(renkei.PurposeBreakGlass) && e.Patient.ID != "" &&
		(e.Action == renkei.ActionRead || e.Action == renkei.ActionQuery || e.Action == renkei.ActionExport) &&
		(e.ActorKind == renkei.UserPrincipal || e.ActorKind == renkei.TokenPrincipal || e.ActorKind == renkei.AEPrincipal) {
		ok, err := g.isRelated(ctx, e)
		if err != nil {
			return nil, err
		}
		if !ok {
			h := newHit(RuleNoRelation, renkei.SeverityHigh, fmt.Sprintf("%s/%s", actorSubject(e), patientKey(e.DataInstitution, e.Patient)), e)
			h.DataInstitution, h.Patient = e.DataInstitution, e.Patient
			h.Explanation = fmt.Sprintf("%sが、紹介・共有・相談・自施設のいずれの関係もない他施設の患者(患者ID %s)のデータを開きました。どのような経緯で見えたのか確認してください。",
				e.Actor, e.Patient.ID)
			h.ExplanationEn = fmt.Sprintf("%s opened data of another institution's patient (patient ID %s) with no referral, share, consult or own-institution relation. Find out how they could see it.",
				e.Actor, e.Patient.ID)
			add(h, []int64{e.Seq}, 1)
		}
	}
	return hits, nil
}

// activity reports whether an action is someone working (not a logout or a failure).
func activity(a renkei.AuditAction) bool {
	switch a {
	case renkei.ActionLogin, renkei.ActionRead, renkei.ActionQuery, renkei.ActionExport, renkei.ActionStore, renkei.ActionRecord,
		renkei.ActionReferral, renkei.ActionShare, renkei.ActionAdmin, renkei.ActionBreakGlass:
		return true
	}
	return false
}

// unusualHour learns when a user works (hours of the day on which they were active, counted once per hour) and,
// once MinDays days are known, reports activity in an hour that (with its neighbours) holds less than RareShare of
// it: a stolen account used at night by someone who works days.
func (g *engine) unusualHour(e *renkei.AuditEvent, learn bool) (hit, bool) {
	c := g.cfg.UnusualHours
	t := e.Time.In(g.loc)
	_, off := t.Zone()
	day := (e.Time.Unix() + int64(off)) / 86400
	hour := t.Hour()
	slot := day*24 + int64(hour)
	p := g.profiles[e.ActorID]
	if p == nil {
		p = &profile{}
		g.profiles[e.ActorID] = p
	}
	if p.LastSlot == slot {
		return hit{}, false
	}
	var h hit
	found := false
	if p.Days >= c.MinDays {
		total := 0
		for _, n := range p.Hours {
			total += n
		}
		near := p.Hours[(hour+23)%24] + p.Hours[hour] + p.Hours[(hour+1)%24]
		if share := float64(near) / float64(max(total, 1)); share < c.RareShare {
			h = newHit(RuleUnusualHours, renkei.SeverityMedium, actorSubject(e), e)
			pct := math.Round(share*1000) / 10
			h.Explanation = fmt.Sprintf("%sが、普段は使わない時間帯(%d時台)に利用しました。これまでの利用(%d日分)のうち、この前後の時間帯は%.1f%%です。本人の操作か確認してください。",
				e.Actor, hour, p.Days, pct)
			h.ExplanationEn = fmt.Sprintf("%s was active at an hour they do not usually work (%02d:00–%02d:59). Of their activity so far (%d days), %.1f%% fell near this hour. Check that it was them.",
				e.Actor, hour, hour, p.Days, pct)
			found = true
		}
	}
	if learn {
		p.LastSlot = slot
		p.Hours[hour]++
		if p.LastDay != day {
			p.LastDay = day
			p.Days++
		}
	}
	return h, found
}

// network is the network an address belongs to for the new-network rule: its IPv4 /24 or IPv6 /48.
func network(source string) (netip.Prefix, bool) {
	a, err := netip.ParseAddr(host(source))
	if err != nil {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	bits := 24
	if a.Is6() {
		bits = 48
	}
	p, err := a.Prefix(bits)
	return p, err == nil
}

// newNetwork learns the networks a user logs in from and reports a login from one never seen, once MinLogins are
// known: a stolen password used from elsewhere.
func (g *engine) newNetwork(e *renkei.AuditEvent, learn bool) (hit, bool) {
	nw, ok := network(e.Source)
	if !ok {
		return hit{}, false
	}
	p := g.profiles[e.ActorID]
	if p == nil {
		p = &profile{}
		g.profiles[e.ActorID] = p
	}
	key := nw.String()
	var h hit
	found := false
	if p.Logins >= g.cfg.NewNetwork.MinLogins && p.Networks[key] == 0 {
		known, name := len(g.known) > 0, ""
		for _, k := range g.known {
			for _, kp := range k.prefixes {
				if kp.Contains(nw.Addr()) {
					name = k.name
				}
			}
		}
		h = newHit(RuleNewNetwork, renkei.SeverityMedium, actorSubject(e)+"/"+key, e)
		where, whereEn := "", ""
		switch {
		case name != "":
			where, whereEn = "(登録済みのネットワーク「"+name+"」)", " (the region's network "+strconv.Quote(name)+")"
		case known:
			where, whereEn = "(地域に登録されたどのネットワークでもありません)", " (none of the region's known networks)"
		}
		h.Explanation = fmt.Sprintf("%sが、これまで一度も使っていないネットワーク %s%sからログインしました(これまでのログイン %d回)。本人のログインか確認してください。",
			e.Actor, key, where, p.Logins)
		h.ExplanationEn = fmt.Sprintf("%s logged in from a network they never used before, %s%s (after %d logins). Check that it was them.",
			e.Actor, key, whereEn, p.Logins)
		found = true
	}
	if learn {
		if p.Networks == nil {
			p.Networks = map[string]int{}
		}
		p.Networks[key]++
		p.Logins++
	}
	return h, found
}

// selfGrant recognises an administrator's action on their own account or in their own favour, from the audit
// event's detail as the handlers write it.
func selfGrant(e *renkei.AuditEvent) (string, bool) {
	me := strings.ToLower(e.Actor)
	d := e.Detail
	lower := strings.ToLower(d)
	switch e.Action {
	case renkei.ActionShare:
		if strings.HasPrefix(lower, "shared with "+me+" ") || strings.HasPrefix(lower, "invited "+me+" to consult") {
			return d, true
		}
	case renkei.ActionAdmin:
		if e.Role != renkei.InstitutionAdmin && e.Role != renkei.RegionAdmin {
			return "", false
		}
		if strings.HasPrefix(lower, "reset password and second factor of "+me) {
			return d, true
		}
		// A second account for the same person (same name before the @) with an administrator's role.
		if rest, ok := strings.CutPrefix(lower, "created user "); ok {
			login, role, _ := strings.Cut(rest, " ")
			local, _, _ := strings.Cut(login, "@")
			mine, _, _ := strings.Cut(me, "@")
			if local == mine && login != me && strings.Contains(role, "admin") {
				return d, true
			}
		}
	}
	return "", false
}

// isRelated asks the store whether the actor's institution (or the user) had a reason to see the patient, caching
// yes for ten minutes (no is asked again: a share may just have been made).
func (g *engine) isRelated(ctx context.Context, e *renkei.AuditEvent) (bool, error) {
	var user int64
	if e.ActorKind == renkei.UserPrincipal {
		user = e.ActorID
	}
	k := relKey{e.Institution, user, e.DataInstitution, e.Patient}
	if until, ok := g.related[k]; ok && e.Time.Before(until) {
		return true, nil
	}
	if g.rel == nil {
		return true, nil
	}
	ok, err := g.rel.Related(ctx, e.Institution, user, e.DataInstitution, e.Patient, e.Time)
	if err != nil {
		return false, err
	}
	if ok {
		g.related[k] = e.Time.Add(10 * time.Minute)
	}
	return ok, nil
}

func (g *engine) sweep(now time.Time) {
	c := g.cfg
	g.lastSweep = now
	g.bulk.sweep(now, c.BulkAccess.Window.D())
	g.export.sweep(now, c.BulkExport.Window.D())
	g.failUser.sweep(now, c.Logins.Window.D())
	g.failSource.sweep(now, c.Logins.Window.D())
	g.sprayAddr.sweep(now, c.Logins.Window.D())
	g.sprayRegion.prune(now, c.Logins.Window.D())
	g.ae.sweep(now, c.UnknownAE.Window.D())
	g.denied.sweep(now, c.Enumeration.Window.D())
	g.tokens.sweep(now, c.TokenAddresses.Window.D())
	for k, until := range g.related {
		if !now.Before(until) {
			delete(g.related, k)
		}
	}
}

func roleJa(r renkei.Role) string {
	switch r {
	case renkei.Physician:
		return "医師"
	case renkei.Radiologist:
		return "放射線科医"
	case renkei.Nurse:
		return "看護師"
	case renkei.Clerk:
		return "地域連携室"
	case renkei.InstitutionAdmin:
		return "施設管理者"
	case renkei.RegionAdmin:
		return "地域管理者"
	}
	return string(r)
}
