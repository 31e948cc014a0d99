package monitor

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"renkei"
	"renkei/sqlstore"
)

// benchTrail writes n audit events of a busy region's mix into a real index file: reads and searches by 200 users
// over 5,000 patients, logins (a few failing), a gateway's stores, the odd denied UID. It returns the store and the
// time of the first event.
func benchTrail(b *testing.B, n int) (*sqlstore.DB, time.Time) {
	b.Helper()
	db, err := sqlstore.Open(context.Background(), filepath.Join(b.TempDir(), "index.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	start := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	batch := make([]*renkei.AuditEvent, 0, 1000)
	for i := range n {
		at := start.Add(time.Duration(i) * 500 * time.Microsecond) // 2,000 events a second
		user := int64(i*7919%200 + 1)
		inst := user%10 + 1
		e := &renkei.AuditEvent{Time: at, Actor: fmt.Sprintf("user%d@inst%d", user, inst), ActorKind: renkei.UserPrincipal, ActorID: user,
			Institution: inst, Role: renkei.Physician, Action: renkei.ActionQuery, Outcome: renkei.OutcomeSuccess, Source: fmt.Sprintf("10.0.%d.%d", inst, user),
			DataInstitution: inst, Patient: renkei.PatientKey{Issuer: fmt.Sprint("I", inst), ID: fmt.Sprint("P", i*104729%5000)}, Study: fmt.Sprint("1.2.3.", i%9000)}
		switch r := i % 100; {
		case r < 45:
		case r < 85:
			e.Action = renkei.ActionRead
		case r < 90:
			e.Action, e.Patient, e.Study, e.Detail = renkei.ActionLogin, renkei.PatientKey{}, "", "second factor totp accepted"
			if r == 89 {
				e.Outcome, e.Detail = renkei.OutcomeFailure, "wrong password"
			}
		case r < 98:
			e.ActorKind, e.ActorID, e.Actor, e.Role, e.Action = renkei.TokenPrincipal, inst, fmt.Sprint("gateway", inst), "", renkei.ActionStore
		case r < 99:
			e.Action, e.Outcome, e.Patient, e.Study, e.Detail = renkei.ActionDenied, renkei.OutcomeFailure, renkei.PatientKey{}, "", "not found or not visible"
		default:
			e.Action, e.Detail = renkei.ActionExport, ""
		}
		batch = append(batch, e)
		if len(batch) == cap(batch) || i == n-1 {
			if err := db.Audit(context.Background(), batch...); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	return db, start
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// readAll reads the whole trail the way the monitor does, and nothing else: the baseline.
func readAll(b *testing.B, db *sqlstore.DB) int {
	n := 0
	var pos int64
	for {
		evs, err := db.AuditAfter(context.Background(), pos, batchSize)
		if err != nil {
			b.Fatal(err)
		}
		if len(evs) == 0 {
			return n
		}
		n += len(evs)
		pos = evs[len(evs)-1].Seq
	}
}

// BenchmarkMonitor measures how many audit events a second the rules evaluate (read, judged, cursor committed per
// batch, as Run does) and the CPU that costs at the region's target of 2,000 events a second, against reading the
// same events and nothing more.
func BenchmarkMonitor(b *testing.B) {
	const n = 40_000
	db, start := benchTrail(b, n)
	report := func(b *testing.B, events int, cpu, wall time.Duration) {
		b.ReportMetric(float64(events)/wall.Seconds(), "events/s")
		// CPU per event × 2,000 events a second = the share of one core the monitor needs at that rate.
		b.ReportMetric(cpu.Seconds()/float64(events)*2000*100, "%core@2000ev/s")
	}
	var readCPU time.Duration
	b.Run("read", func(b *testing.B) {
		events := 0
		c0, t0 := cpuTime(), time.Now()
		for b.Loop() {
			events += readAll(b, db)
		}
		cpu := cpuTime() - c0
		readCPU = cpu / time.Duration(events/n)
		report(b, events, cpu, time.Since(t0))
	})
	b.Run("evaluate", func(b *testing.B) {
		events := 0
		c0, t0 := cpuTime(), time.Now()
		runs := 0
		for b.Loop() {
			runs++
			m := New(db)
			m.Now = func() time.Time { return start }
			m.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
			m.Name = fmt.Sprint("bench-", runs, "-", time.Now().UnixNano())
			if _, _, err := db.MonitorCursor(context.Background(), m.Name, 0); err != nil {
				b.Fatal(err)
			}
			r, err := m.start(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			for {
				k, err := r.step(context.Background())
				if err != nil {
					b.Fatal(err)
				}
				events += k
				if k < batchSize {
					break
				}
			}
		}
		cpu := cpuTime() - c0
		report(b, events, cpu, time.Since(t0))
		if readCPU > 0 {
			b.ReportMetric(float64(cpu/time.Duration(runs))/float64(readCPU), "cpu-x-read")
		}
	})
}
