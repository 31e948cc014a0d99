package monitor_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"renkei"
	"renkei/internal/testclock"
	"renkei/monitor"
	"renkei/sqlstore"
)

// fixture is a real index file with a running monitor on a movable clock.
type fixture struct {
	t     *testing.T
	db    *sqlstore.DB
	clock *testclock.Clock
	mon   *monitor.Monitor
	stop  func()
}

func newFixture(t *testing.T, cfg func(*monitor.Config)) *fixture {
	t.Helper()
	db, err := sqlstore.Open(context.Background(), filepath.Join(t.TempDir(), "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	// 10:00 in Tokyo on a weekday.
	clk := testclock.New(time.Date(2026, 11, 2, 1, 0, 0, 0, time.UTC))
	db.Now = clk.Now
	f := &fixture{t: t, db: db, clock: clk}
	// Something in the trail before the monitor starts: it is not judged.
	seqs := f.audit(renkei.AuditEvent{Actor: "renkei", ActorKind: renkei.SystemPrincipal, Action: renkei.ActionAdmin, Detail: "start"})
	// The monitor starts at the end of the trail as it is now (as Run would, but before the test writes more).
	if _, _, err := db.MonitorCursor(context.Background(), "rules", seqs[0]); err != nil {
		t.Fatal(err)
	}
	f.start(cfg)
	t.Cleanup(func() {
		f.stop()
		db.Close()
	})
	return f
}

func (f *fixture) start(cfg func(*monitor.Config)) {
	m := monitor.New(f.db)
	m.Now, m.Poll = f.clock.Now, 5*time.Millisecond
	m.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if cfg != nil {
		cfg(&m.Config)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		if err := m.Run(ctx); err != nil {
			f.t.Error(err)
		}
		close(done)
	}()
	f.mon = m
	f.stop = func() { cancel(); <-done }
}

// audit appends events as renkei's parts do, at the clock's time.
func (f *fixture) audit(events ...renkei.AuditEvent) []int64 {
	f.t.Helper()
	var ptrs []*renkei.AuditEvent
	for i := range events {
		e := events[i]
		if e.Time.IsZero() {
			e.Time = f.clock.Now()
		}
		ptrs = append(ptrs, &e)
	}
	if err := f.db.Audit(context.Background(), ptrs...); err != nil {
		f.t.Fatal(err)
	}
	var seqs []int64
	for _, p := range ptrs {
		seqs = append(seqs, p.Seq)
	}
	return seqs
}

// settle waits until the monitor has judged every event so far (its cursor reaches the head) and a tick has run.
func (f *fixture) settle() {
	f.t.Helper()
	head, err := f.db.AuditSeqAt(context.Background(), f.clock.Now().Add(time.Hour))
	if err != nil {
		f.t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		cur, _, err := f.db.MonitorCursor(context.Background(), "rules", 0)
		if err != nil {
			f.t.Fatal(err)
		}
		if cur >= head-1 {
			break
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("the monitor is at event %d of %d after 10 s", cur, head-1)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// One more round, so that a tick after the last batch has run too.
	f.mon.Wake()
	time.Sleep(50 * time.Millisecond)
}

type got struct {
	Rule, Subject string
	Events        int
}

func (f *fixture) alerts() []got {
	f.t.Helper()
	list, err := f.db.Alerts(context.Background(), renkei.AlertFilter{})
	if err != nil {
		f.t.Fatal(err)
	}
	var out []got
	for _, a := range list {
		out = append(out, got{a.Rule, a.Subject, len(a.Events)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Rule+out[i].Subject < out[j].Rule+out[j].Subject })
	return out
}

func read(user int64, login string, role renkei.Role, inst, dataInst int64, patient string) renkei.AuditEvent {
	return renkei.AuditEvent{Actor: login, ActorKind: renkei.UserPrincipal, ActorID: user, Institution: inst, Role: role, Action: renkei.ActionRead,
		Outcome: renkei.OutcomeSuccess, Source: "10.0.0.5", DataInstitution: dataInst, Patient: renkei.PatientKey{Issuer: "KITA", ID: patient},
		Study: "1.2.3." + patient}
}

func login(user int64, name, addr string) renkei.AuditEvent {
	return renkei.AuditEvent{Actor: name, ActorKind: renkei.UserPrincipal, ActorID: user, Institution: 1, Role: renkei.Physician,
		Action: renkei.ActionLogin, Outcome: renkei.OutcomeSuccess, Source: addr, Detail: "second factor totp accepted"}
}

func loginFailure(login, addr string) renkei.AuditEvent {
	return renkei.AuditEvent{Actor: login, ActorKind: renkei.UserPrincipal, Action: renkei.ActionLogin, Outcome: renkei.OutcomeFailure, Source: addr,
		Detail: "wrong password"}
}

// TestRules: each pattern, written into a real audit trail, raises exactly its alert with the events behind it; the
// same work below the thresholds raises none.
func TestRules(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cfg    func(*monitor.Config)
		events func(f *fixture)
		want   []got
	}{
		{"bulk access", nil, func(f *fixture) {
			for i := range 31 {
				f.audit(read(7, "kato@kita-clinic", renkei.Physician, 1, 1, fmt.Sprint("P", i)))
				f.clock.Advance(time.Minute)
			}
		}, []got{{monitor.RuleBulkAccess, "user:7", 31}}},
		{"the same patient many times is not bulk", nil, func(f *fixture) {
			for range 60 {
				f.audit(read(7, "kato@kita-clinic", renkei.Physician, 1, 1, "P1"))
			}
		}, nil},
		{"a radiologist's reading list is not bulk", nil, func(f *fixture) {
			for i := range 40 {
				f.audit(read(8, "suzuki@chuo-hospital", renkei.Radiologist, 2, 2, fmt.Sprint("R", i)))
			}
		}, nil},
		{"patients spread over the day are not bulk", nil, func(f *fixture) {
			for i := range 60 {
				f.audit(read(7, "kato@kita-clinic", renkei.Physician, 1, 1, fmt.Sprint("P", i)))
				f.clock.Advance(5 * time.Minute)
			}
		}, nil},
		{"bulk export", nil, func(f *fixture) {
			for i := range 20 {
				e := read(7, "kato@kita-clinic", renkei.Physician, 1, 1, fmt.Sprint("P", i))
				e.Action = renkei.ActionExport
				f.audit(e)
			}
		}, []got{{monitor.RuleBulkExport, "user:7", 20}}},
		{"login failures of one user", nil, func(f *fixture) {
			for range 5 {
				f.audit(loginFailure("kato@kita-clinic", "10.0.0.9"))
			}
		}, []got{{monitor.RuleLoginFailuresUser, "login:kato@kita-clinic", 5}}},
		{"password spraying", nil, func(f *fixture) {
			for i := range 6 {
				f.audit(loginFailure(fmt.Sprintf("user%d@kita-clinic", i), "203.0.113.9"))
			}
		}, []got{{monitor.RulePasswordSpraying, "addr:203.0.113.9", 5 + 1}}},
		{"a login from a new network", func(c *monitor.Config) {
			c.NewNetwork.Known = map[string][]string{"北町クリニック院内LAN": {"10.0.0.0/16"}, "地域VPN": {"172.16.0.0/12"}}
		}, func(f *fixture) {
			for i := range 6 { // a week of logins from the clinic, from two desks
				f.audit(login(7, "kato@kita-clinic", fmt.Sprintf("10.0.0.%d", 5+i%2)))
				f.clock.Advance(24 * time.Hour)
			}
			f.audit(login(7, "kato@kita-clinic", "10.0.0.77"))     // the same network: nothing
			f.audit(login(7, "kato@kita-clinic", "198.51.100.23")) // somewhere else
			f.audit(login(7, "kato@kita-clinic", "198.51.100.24")) // the same new network again: the same alert
		}, []got{{monitor.RuleNewNetwork, "user:7/198.51.100.0/24", 1}}},
		{"the first logins teach, they do not alert", nil, func(f *fixture) {
			for i := range 5 {
				f.audit(login(9, "sato@chuo-hospital", fmt.Sprintf("192.0.2.%d", i)))
				f.audit(login(9, "sato@chuo-hospital", fmt.Sprintf("203.0.113.%d", i)))
			}
		}, nil},
		{"failures from one address", nil, func(f *fixture) {
			for i := range 10 {
				f.audit(loginFailure(fmt.Sprintf("u%d", i%3), "203.0.113.7"))
			}
		}, []got{{monitor.RuleLoginFailuresSource, "addr:203.0.113.7", 10}}},
		{"spraying from many addresses", func(c *monitor.Config) { c.Logins.SprayingRegion = 8 }, func(f *fixture) {
			for i := range 8 {
				f.audit(loginFailure(fmt.Sprintf("user%d", i), fmt.Sprintf("198.51.100.%d", i)))
			}
		}, []got{{monitor.RulePasswordSpraying, "region", 8}}},
		{"unknown AE", nil, func(f *fixture) {
			f.audit(renkei.AuditEvent{Actor: "PROBE", ActorKind: renkei.AEPrincipal, Action: renkei.ActionAssociate, Outcome: renkei.OutcomeFailure,
				Source: "PROBE@192.0.2.66:40000", Detail: "association rejected"})
			f.audit(renkei.AuditEvent{Actor: "PROBE", ActorKind: renkei.AEPrincipal, Action: renkei.ActionAssociate, Outcome: renkei.OutcomeFailure,
				Source: "PROBE@192.0.2.66:40001", Detail: "association rejected"})
		}, []got{{monitor.RuleUnknownAE, "ae:PROBE@192.0.2.66", 2}}},
		{"UID enumeration", nil, func(f *fixture) {
			for i := range 20 {
				f.audit(renkei.AuditEvent{Actor: "tanaka@chuo-hospital", ActorKind: renkei.UserPrincipal, ActorID: 3, Institution: 2, Role: renkei.Physician,
					Action: renkei.ActionDenied, Outcome: renkei.OutcomeFailure, Source: "10.0.0.7", Detail: fmt.Sprint("not found or not visible: StudyInstanceUID=1.2.", i)})
			}
		}, []got{{monitor.RuleEnumeration, "user:3", 20}}},
		{"a token from two addresses", nil, func(f *fixture) {
			tok := func(addr string) renkei.AuditEvent {
				return renkei.AuditEvent{Actor: "gateway", ActorKind: renkei.TokenPrincipal, ActorID: 4, Institution: 1, Action: renkei.ActionStore,
					Outcome: renkei.OutcomeSuccess, Source: addr, DataInstitution: 1, Patient: renkei.PatientKey{Issuer: "KITA", ID: "P1"}}
			}
			f.audit(tok("10.0.0.2"), tok("10.0.0.2"))
			f.audit(tok("198.51.100.4"))
		}, []got{{monitor.RuleTokenAddresses, "token:4", 3}}},
		{"a token from two addresses an hour apart is a move", nil, func(f *fixture) {
			tok := func(addr string) renkei.AuditEvent {
				return renkei.AuditEvent{Actor: "gateway", ActorKind: renkei.TokenPrincipal, ActorID: 4, Institution: 1, Action: renkei.ActionStore,
					Outcome: renkei.OutcomeSuccess, Source: addr}
			}
			f.audit(tok("10.0.0.2"))
			f.clock.Advance(time.Hour)
			f.audit(tok("10.0.0.3"))
		}, nil},
		{"no relation", nil, func(f *fixture) {
			f.audit(read(3, "tanaka@chuo-hospital", renkei.Physician, 2, 1, "P9"))
		}, []got{{monitor.RuleNoRelation, "user:3/1|KITA|P9", 1}}},
		{"break-glass reads are not 'no relation'", nil, func(f *fixture) {
			e := read(3, "tanaka@chuo-hospital", renkei.Physician, 2, 1, "P9")
			e.Purpose = string(renkei.PurposeBreakGlass)
			f.audit(e)
		}, nil},
		{"self grant", nil, func(f *fixture) {
			f.audit(renkei.AuditEvent{Actor: "admin@kita-clinic", ActorKind: renkei.UserPrincipal, ActorID: 2, Institution: 1, Role: renkei.InstitutionAdmin,
				Action: renkei.ActionAdmin, Outcome: renkei.OutcomeSuccess, Detail: "reset password and second factor of admin@kita-clinic"})
			f.audit(renkei.AuditEvent{Actor: "admin@kita-clinic", ActorKind: renkei.UserPrincipal, ActorID: 2, Institution: 1, Role: renkei.InstitutionAdmin,
				Action: renkei.ActionAdmin, Outcome: renkei.OutcomeSuccess, Detail: "reset password and second factor of kato@kita-clinic"})
		}, []got{{monitor.RuleSelfGrant, "user:2", 1}}},
		{"unusual hours", func(c *monitor.Config) { c.UnusualHours.MinDays = 5 }, func(f *fixture) {
			for range 6 { // six days of 10:00–16:00
				for range 6 {
					f.audit(read(7, "kato@kita-clinic", renkei.Physician, 1, 1, "P1"))
					f.clock.Advance(time.Hour)
				}
				f.clock.Advance(18 * time.Hour)
			}
			f.clock.Advance(16 * time.Hour) // 02:00 the next night
			f.audit(read(7, "kato@kita-clinic", renkei.Physician, 1, 1, "P1"))
		}, []got{{monitor.RuleUnusualHours, "user:7", 1}}},
		{"usual hours", func(c *monitor.Config) { c.UnusualHours.MinDays = 5 }, func(f *fixture) {
			for range 7 {
				for range 6 {
					f.audit(read(7, "kato@kita-clinic", renkei.Physician, 1, 1, "P1"))
					f.clock.Advance(time.Hour)
				}
				f.clock.Advance(18 * time.Hour)
			}
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.cfg)
			tc.events(f)
			f.settle()
			if d := cmp.Diff(tc.want, f.alerts()); d != "" {
				t.Errorf("alerts (-want +got):\n%s", d)
			}
		})
	}
}

// TestDedupAndRestart: a pattern that goes on adds to its one open alert; a resolved alert stays resolved and the
// next occurrence opens a new one; a restarted monitor neither raises again what it raised nor forgets its windows.
func TestDedupAndRestart(t *testing.T) {
	f := newFixture(t, nil)
	for i := range 31 {
		f.audit(read(7, "kato@kita-clinic", renkei.Physician, 1, 1, fmt.Sprint("P", i)))
	}
	f.settle()
	for i := 31; i < 35; i++ {
		f.audit(read(7, "kato@kita-clinic", renkei.Physician, 1, 1, fmt.Sprint("P", i)))
	}
	f.settle()
	if d := cmp.Diff([]got{{monitor.RuleBulkAccess, "user:7", 35}}, f.alerts()); d != "" {
		t.Fatalf("alerts (-want +got):\n%s", d)
	}
	// Restart: the windows are read again, nothing is raised twice.
	f.stop()
	f.start(nil)
	f.settle()
	if d := cmp.Diff([]got{{monitor.RuleBulkAccess, "user:7", 35}}, f.alerts()); d != "" {
		t.Fatalf("after a restart (-want +got):\n%s", d)
	}
	list, _ := f.db.Alerts(context.Background(), renkei.AlertFilter{})
	if err := f.db.ResolveAlert(context.Background(), list[0].ID, 0, "admin", "確認済み: 健診の読影", nil); err != nil {
		t.Fatal(err)
	}
	// The window is still full after the restart: the next patient is part of the pattern, in a new alert.
	f.audit(read(7, "kato@kita-clinic", renkei.Physician, 1, 1, "P99"))
	f.settle()
	list, _ = f.db.Alerts(context.Background(), renkei.AlertFilter{})
	if len(list) != 2 || list[0].Status != renkei.AlertOpen || list[1].Status != renkei.AlertResolved || !slices.Equal(list[0].Events, []int64{list[0].Events[0]}) {
		t.Errorf("after resolving, the next patient: %+v", list)
	}
}
