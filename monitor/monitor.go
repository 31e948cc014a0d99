// Package monitor reads the audit trail as it grows and raises alerts when a pattern that deserves an
// administrator's look appears: many patients opened by one user, bulk downloads, activity at hours a user never
// works, another institution's patient opened without any relation, a break-glass access nobody reviewed, failed
// logins per account and per address and password spraying, unknown DICOM peers, UID guessing, an API token used
// from two addresses, an administrator granting themselves rights.
//
// The monitor follows the trail by Seq with a durable cursor kept in the index. Its windows live in memory and are
// filled again after a restart by reading the last hour of the trail; what it learns over weeks (each user's hours)
// is saved with the cursor. Moving the cursor and raising the alerts of the events it passes happen in one
// transaction, a compare-and-set on the cursor, so that several nodes each following the trail raise each pattern
// once. Only one alert is open per rule and subject: a pattern that goes on adds its events to it.
package monitor

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"renkei"
	"renkei/notify"
)

// Store is what the monitor reads and writes (sqlstore.DB implements it).
type Store interface {
	Relations
	AuditAfter(ctx context.Context, after int64, limit int) ([]renkei.AuditEvent, error)
	AuditSeqAt(ctx context.Context, t time.Time) (int64, error)
	AuditEvents(ctx context.Context, f renkei.AuditFilter) ([]renkei.AuditEvent, error)
	MonitorCursor(ctx context.Context, name string, start int64) (int64, []byte, error)
	CommitMonitor(ctx context.Context, name string, from, to int64, state []byte, alerts []*renkei.Alert) error
	Shares(ctx context.Context, f renkei.ShareFilter) ([]renkei.Share, error)
	Institutions(ctx context.Context) ([]renkei.Institution, error)
	Alerts(ctx context.Context, f renkei.AlertFilter) ([]renkei.Alert, error)
}

// Mailer sends e-mail (notify.Mailer).
type Mailer interface {
	Send(msg notify.Message)
}

// Monitor evaluates the rules over the audit trail. Set the fields, then Run.
type Monitor struct {
	Store  Store
	Config Config
	Logger *slog.Logger
	Now    func() time.Time
	// Poll is how often the trail is read when it is quiet (default 1 s).
	Poll time.Duration
	// Name names the cursor (default "rules").
	Name string
	// Mailer sends the daily summary to each institution's address, with PublicURL for the link; nil sends none.
	Mailer    Mailer
	PublicURL string
	// Raised, if set, is told of each alert opened or added to (live updates, tests).
	Raised func(a *renkei.Alert)

	wake chan struct{}
}

// New returns a monitor with the default rules.
func New(store Store) *Monitor {
	return &Monitor{Store: store, Config: DefaultConfig(), Now: time.Now, Poll: time.Second, Name: "rules", wake: make(chan struct{}, 1)}
}

// Wake makes a waiting Run read the trail now rather than at its next poll.
func (m *Monitor) Wake() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// state is what is saved with the cursor.
type state struct {
	// ProfileSeq is the last event the profiles include.
	ProfileSeq int64              `json:"profileSeq"`
	Profiles   map[int64]*profile `json:"profiles"`
	SummaryDay string             `json:"summaryDay"`
	// BreakGlass are the break-glass shares already raised.
	BreakGlass []int64 `json:"breakGlass,omitempty"`
}

const batchSize = 1000

// Run follows the trail until ctx ends. Errors of the store are logged and retried at the next poll.
func (m *Monitor) Run(ctx context.Context) error {
	if m.wake == nil {
		m.wake = make(chan struct{}, 1)
	}
	r, err := m.start(ctx)
	if err != nil {
		return err
	}
	for {
		n, err := r.step(ctx)
		if err != nil && ctx.Err() == nil {
			m.logger().Error("security monitoring", "err", err)
		}
		if ctx.Err() != nil {
			return nil
		}
		if n == batchSize {
			continue
		}
		if err := r.tick(ctx); err != nil && ctx.Err() == nil {
			m.logger().Error("security monitoring", "err", err)
		}
		t := time.NewTimer(m.poll())
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-m.wake:
			t.Stop()
		case <-t.C:
		}
	}
}

func (m *Monitor) poll() time.Duration {
	if m.Poll <= 0 {
		return time.Second
	}
	return m.Poll
}

func (m *Monitor) logger() *slog.Logger {
	if m.Logger == nil {
		return slog.Default()
	}
	return m.Logger
}

func (m *Monitor) now() time.Time {
	if m.Now == nil {
		return time.Now()
	}
	return m.Now()
}

// runner is one Run's progress.
type runner struct {
	m      *Monitor
	eng    *engine
	st     state
	pos    int64 // the last event evaluated
	cursor int64 // the last event whose alerts are committed (by this node or another)
	saved  time.Time
	// lastTick is when break-glass accesses were last checked.
	lastTick time.Time
	raisedBG map[int64]bool
}

// start loads the cursor and the learned state and positions the reading a window before the cursor, so that the
// windows hold what they held before a restart.
func (m *Monitor) start(ctx context.Context) (*runner, error) {
	eng, err := newEngine(m.Config, m.Store)
	if err != nil {
		return nil, err
	}
	name := m.Name
	if name == "" {
		name = "rules"
	}
	m.Name = name
	now := m.now()
	// A monitor seen for the first time starts at the end of the trail: alerts are about what happens from now on.
	head, err := m.Store.AuditSeqAt(ctx, now.Add(100*365*24*time.Hour))
	if err != nil {
		return nil, err
	}
	cursor, raw, err := m.Store.MonitorCursor(ctx, name, head-1)
	if err != nil {
		return nil, err
	}
	r := &runner{m: m, eng: eng, cursor: cursor, raisedBG: map[int64]bool{}}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &r.st); err != nil {
			m.logger().Warn("security monitoring: the saved state is unreadable; learning again", "err", err)
			r.st = state{}
		}
	}
	if r.st.Profiles == nil {
		r.st.Profiles = map[int64]*profile{}
		r.st.ProfileSeq = cursor
	}
	eng.profiles = r.st.Profiles
	for _, id := range r.st.BreakGlass {
		r.raisedBG[id] = true
	}
	from, err := m.Store.AuditSeqAt(ctx, now.Add(-eng.maxWindow()))
	if err != nil {
		return nil, err
	}
	r.pos = min(from-1, cursor, r.st.ProfileSeq)
	r.saved = now
	return r, nil
}

// step reads and evaluates the next batch of events and commits the alerts of those past the cursor. It returns how
// many events it read.
func (r *runner) step(ctx context.Context) (int, error) {
	m := r.m
	events, err := m.Store.AuditAfter(ctx, r.pos, batchSize)
	if err != nil || len(events) == 0 {
		return 0, err
	}
	var hits []hit
	for i := range events {
		e := &events[i]
		h, err := r.eng.evaluate(ctx, e, e.Seq > r.cursor, e.Seq > r.st.ProfileSeq)
		if err != nil {
			return 0, err // the batch is read again at the next poll
		}
		hits = append(hits, h...)
	}
	to := events[len(events)-1].Seq
	r.pos = to
	if to > r.st.ProfileSeq {
		r.st.ProfileSeq = to
	}
	if to <= r.cursor {
		return len(events), nil
	}
	return len(events), r.commit(ctx, to, merge(hits))
}

// commit moves the cursor to to with alerts; the learned state is saved with it every minute.
func (r *runner) commit(ctx context.Context, to int64, alerts []*renkei.Alert) error {
	var raw []byte
	now := r.m.now()
	if now.Sub(r.saved) >= time.Minute || r.saved.IsZero() || to == r.cursor {
		var err error
		r.st.BreakGlass = r.st.BreakGlass[:0]
		for id := range r.raisedBG {
			r.st.BreakGlass = append(r.st.BreakGlass, id)
		}
		slices.Sort(r.st.BreakGlass)
		if raw, err = json.Marshal(r.st); err != nil {
			return err
		}
	}
	err := r.m.Store.CommitMonitor(ctx, r.m.Name, r.cursor, to, raw, alerts)
	if renkei.ErrorKind(err) == renkei.Conflict {
		// Another node committed these events' alerts: follow its cursor.
		cur, _, err := r.m.Store.MonitorCursor(ctx, r.m.Name, r.cursor)
		if err != nil {
			return err
		}
		r.cursor = cur
		return nil
	}
	if err != nil {
		return err
	}
	r.cursor = to
	if raw != nil {
		r.saved = now
	}
	for _, a := range alerts {
		if a.ID != 0 {
			r.m.logger().Warn("security alert", "rule", a.Rule, "subject", a.Subject, "severity", a.Severity, "alert", a.ID, "events", len(a.Events))
			if r.m.Raised != nil {
				r.m.Raised(a)
			}
		}
	}
	return nil
}

// merge turns the hits of a batch into one alert per rule and subject.
func merge(hits []hit) []*renkei.Alert {
	var out []*renkei.Alert
	by := map[string]*renkei.Alert{}
	for _, h := range hits {
		k := h.Rule + "\x00" + h.Subject
		a := by[k]
		if a == nil {
			a = new(renkei.Alert)
			*a = h.Alert
			by[k] = a
			out = append(out, a)
			continue
		}
		a.Events = append(a.Events, h.Events...)
		a.Count += h.Count
		a.Explanation, a.ExplanationEn, a.LastAt = h.Explanation, h.ExplanationEn, h.LastAt
		if a.Patient.ID == "" {
			a.DataInstitution, a.Patient = h.DataInstitution, h.Patient
		}
	}
	for _, a := range out {
		slices.Sort(a.Events)
		a.Events = slices.Compact(a.Events)
		if len(a.Events) > renkei.MaxAlertEvents {
			a.Events = a.Events[:renkei.MaxAlertEvents]
		}
	}
	return out
}

// tick runs the checks that depend on time passing rather than on events: break-glass accesses left unreviewed, and
// the daily summary.
func (r *runner) tick(ctx context.Context) error {
	now := r.m.now()
	// Checked every minute, or more often when the review period is short (a region that wants a review within
	// minutes).
	every := min(time.Minute, r.m.Config.BreakGlass.Review.D()/4)
	if !r.lastTick.IsZero() && now.Sub(r.lastTick) < every && now.After(r.lastTick) {
		return nil
	}
	r.lastTick = now
	alerts, err := r.breakGlass(ctx, now)
	if err != nil {
		return err
	}
	summary := r.dueSummary(now)
	if len(alerts) > 0 || summary != "" {
		if summary != "" {
			r.st.SummaryDay = summary
			r.saved = time.Time{} // save the state with this commit
		}
		if err := r.commit(ctx, r.cursor, alerts); err != nil {
			return err
		}
		for _, a := range alerts {
			r.raisedBG[shareOf(a)] = true
		}
		if summary != "" {
			return r.sendSummary(ctx, now)
		}
	}
	return nil
}

func shareOf(a *renkei.Alert) int64 {
	var id int64
	fmt.Sscanf(a.Subject, "share:%d", &id)
	return id
}

// breakGlass raises an alert for each break-glass access its owning institution has not reviewed within the
// configured period.
func (r *runner) breakGlass(ctx context.Context, now time.Time) ([]*renkei.Alert, error) {
	period := r.m.Config.BreakGlass.Review.D()
	shares, err := r.m.Store.Shares(ctx, renkei.ShareFilter{Purpose: renkei.PurposeBreakGlass, Unreviewed: true})
	if err != nil {
		return nil, err
	}
	var out []*renkei.Alert
	for _, sh := range shares {
		if r.raisedBG[sh.ID] || now.Sub(sh.CreatedAt) < period {
			continue
		}
		a := &renkei.Alert{Rule: RuleBreakGlass, Subject: fmt.Sprintf("share:%d", sh.ID), Severity: renkei.SeverityMedium, Once: true,
			Institution: sh.FromInstitution, Actor: sh.CreatedByName, ActorKind: renkei.UserPrincipal, ActorID: sh.CreatedBy,
			DataInstitution: sh.FromInstitution, Patient: sh.Patient, FirstAt: sh.CreatedAt, LastAt: now, Count: 1}
		p := sh.Patient
		evs, err := r.m.Store.AuditEvents(ctx, renkei.AuditFilter{DataInstitution: sh.FromInstitution, Patient: &p, Action: renkei.ActionBreakGlass, Limit: 100})
		if err != nil {
			return nil, err
		}
		for _, e := range evs {
			if e.ActorID == sh.CreatedBy && e.Time.Sub(sh.CreatedAt).Abs() < time.Minute {
				a.Events = append(a.Events, e.Seq)
			}
		}
		slices.Sort(a.Events)
		hours := int(period / time.Hour)
		a.Explanation = fmt.Sprintf("%sによる緊急閲覧(患者ID %s、理由「%s」)が%d時間たっても確認されていません。管理画面の「緊急閲覧の確認待ち」で、正当な救急利用だったか確認してください。",
			sh.CreatedByName, sh.Patient.ID, sh.Reason, hours)
		a.ExplanationEn = fmt.Sprintf("The emergency access by %s (patient ID %s, reason %q) has not been reviewed after %d hours. Review it under \"Emergency accesses to review\" on the admin page.",
			sh.CreatedByName, sh.Patient.ID, sh.Reason, hours)
		out = append(out, a)
	}
	return out, nil
}

// dueSummary returns today's date (local) if the daily summary is due and not yet sent, else "".
func (r *runner) dueSummary(now time.Time) string {
	h := r.m.Config.Summary.Hour
	if r.m.Mailer == nil || h < 0 {
		return ""
	}
	t := now.In(r.eng.loc)
	day := t.Format("2006-01-02")
	if t.Hour() < h || r.st.SummaryDay == day {
		return ""
	}
	return day
}

// sendSummary e-mails each institution with an address the number of its unresolved alerts (region operators: all
// of them), by rule. No names, patients or addresses: e-mail leaves the region's control.
func (r *runner) sendSummary(ctx context.Context, now time.Time) error {
	insts, err := r.m.Store.Institutions(ctx)
	if err != nil {
		return err
	}
	all, err := r.m.Store.Alerts(ctx, renkei.AlertFilter{Unresolved: true, Limit: 10000})
	if err != nil {
		return err
	}
	for _, in := range insts {
		if in.Email == "" {
			continue
		}
		counts := map[string]int{}
		high := 0
		n := 0
		for _, a := range all {
			if in.Kind != renkei.RegionOperator && a.Institution != in.PK {
				continue
			}
			counts[a.Rule]++
			n++
			if a.Severity == renkei.SeverityHigh {
				high++
			}
		}
		if n == 0 {
			continue
		}
		var rules []string
		for rule := range counts {
			rules = append(rules, rule)
		}
		slices.Sort(rules)
		var b strings.Builder
		fmt.Fprintf(&b, "%s 様\n\nrenkei のセキュリティ監視で、未対応の警告が %d 件あります(うち重要 %d 件)。\n\n", in.Name, n, high)
		for _, rule := range rules {
			fmt.Fprintf(&b, "・%s: %d 件\n", RuleTitle(rule), counts[rule])
		}
		fmt.Fprintf(&b, "\n内容の確認と対応は renkei の「警告」画面で行ってください:\n%s/#/alerts\n\n", strings.TrimSuffix(r.m.PublicURL, "/"))
		fmt.Fprintf(&b, "There are %d unresolved security alerts (%d high) for %s in renkei. Open %s/#/alerts to review them.\n",
			n, high, in.Name, strings.TrimSuffix(r.m.PublicURL, "/"))
		r.m.Mailer.Send(notify.Message{To: []string{in.Email}, Subject: fmt.Sprintf("[renkei] セキュリティ警告 未対応 %d 件 (%s)", n, now.In(r.eng.loc).Format("2006-01-02")),
			Body: b.String()})
	}
	return nil
}

// RuleTitle is a rule's name in Japanese, for e-mails.
func RuleTitle(rule string) string {
	switch rule {
	case RuleBulkAccess:
		return "多数の患者の閲覧"
	case RuleBulkExport:
		return "大量のダウンロード"
	case RuleUnusualHours:
		return "普段と違う時間帯の利用"
	case RuleNoRelation:
		return "関係のない患者の閲覧"
	case RuleBreakGlass:
		return "未確認の緊急閲覧"
	case RuleLoginFailuresUser:
		return "ログイン失敗の繰り返し(利用者)"
	case RuleLoginFailuresSource:
		return "ログイン失敗の繰り返し(アドレス)"
	case RulePasswordSpraying:
		return "パスワードスプレー攻撃"
	case RuleUnknownAE:
		return "未登録のDICOM機器"
	case RuleEnumeration:
		return "検査UIDの探索"
	case RuleTokenAddresses:
		return "APIトークンの複数箇所での使用"
	case RuleSelfGrant:
		return "管理者の自己権限付与"
	}
	return rule
}
