package sqlstore_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"renkei"
)

// BenchmarkInsert measures the index alone on each backend: 16 writers inserting distinct instances (10 per series,
// 100 per study), each with the audit event STOW-RS gives it, through the group committer, as concurrent STOW-RS
// parts do. On PostgreSQL it reports the round trips per instance.
func BenchmarkInsert(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			ctx := context.Background()
			db := openTarget(b, be.target(b))
			var n atomic.Int64
			var wg sync.WaitGroup
			before := db.RoundTrips()
			b.ResetTimer()
			per := b.N/16 + 1
			for w := 0; w < 16; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range per {
						i := n.Add(1)
						in := inst(fmt.Sprint("P", i/100), fmt.Sprint("1.", i/100), fmt.Sprint("1.", i/10, ".1"), fmt.Sprint("1.", i, ".1.1"), "CT", fmt.Sprint("k", i))
						in.Audit = &renkei.AuditEvent{Actor: "bench", ActorKind: renkei.TokenPrincipal, Action: renkei.ActionStore, Patient: in.Patient, Study: in.StudyInstanceUID}
						if _, _, err := db.Insert(ctx, in); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(db.RoundTrips()-before)/float64(n.Load()), "trips/inst")
		})
	}
}

// BenchmarkAuditRead measures appending one read event and waiting for its commit, from 1 and 4 callers: what each
// audited read adds to a request.
func BenchmarkAuditRead(b *testing.B) {
	for _, callers := range []int{1, 4} {
		b.Run(fmt.Sprint(callers, "-callers"), func(b *testing.B) {
			ctx := context.Background()
			db := openDB(b)
			var n atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			for w := 0; w < callers; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for n.Add(1) <= int64(b.N) {
						e := &renkei.AuditEvent{Actor: "bench", ActorKind: renkei.TokenPrincipal, Action: renkei.ActionRead, Institution: 1,
							DataInstitution: 1, Patient: renkei.PatientKey{Issuer: "I", ID: fmt.Sprint("P", n.Load()%1000)}, Study: fmt.Sprint("1.2.", n.Load())}
						if err := db.Audit(ctx, e); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
		})
	}
}

// BenchmarkAuditAppend measures appending events to the chain in groups of 512, as a drain of the audit journal
// does (ns/op is per event).
func BenchmarkAuditAppend(b *testing.B) {
	ctx := context.Background()
	db := openDB(b)
	b.ResetTimer()
	for i := 0; i < b.N; i += 512 {
		evs := make([]*renkei.AuditEvent, 0, 512)
		for j := 0; j < 512; j++ {
			evs = append(evs, &renkei.AuditEvent{Actor: "bench", ActorKind: renkei.TokenPrincipal, Action: renkei.ActionAdmin, Institution: 1,
				DataInstitution: 1, Patient: renkei.PatientKey{Issuer: "I", ID: fmt.Sprint("P", (i+j)%1000)}, Study: fmt.Sprint("1.2.", i+j)})
		}
		if err := db.Audit(ctx, evs...); err != nil {
			b.Fatal(err)
		}
	}
}
