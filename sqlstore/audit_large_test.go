package sqlstore_test

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"renkei"
	"renkei/sqlstore"
)

// TestAuditVerifyLarge builds an audit chain of RENKEI_AUDIT_EVENTS events (e.g. 10000000; skipped when unset) and
// times its verification. The target: 10 million events verify in under 60 s on this machine.
func TestAuditVerifyLarge(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("RENKEI_AUDIT_EVENTS"))
	if n <= 0 {
		t.Skip("set RENKEI_AUDIT_EVENTS=10000000 to build and verify a large audit chain")
	}
	ctx := context.Background()
	db := openDB(t)
	_, priv, _ := ed25519.GenerateKey(nil)
	db.AuditKey = &sqlstore.AuditKey{ID: "bench", Private: priv}
	start := time.Now()
	const batch = 5000
	events := make([]*renkei.AuditEvent, batch)
	for done := 0; done < n; done += batch {
		for i := range events {
			k := done + i
			events[i] = &renkei.AuditEvent{Actor: fmt.Sprintf("user%d@chuo-hospital", k%500), ActorKind: renkei.UserPrincipal, ActorID: int64(k % 500),
				Institution: int64(k%20 + 1), Role: renkei.Physician, Action: renkei.ActionRead, Purpose: "", Source: "10.1.2.3",
				DataInstitution: int64(k%20 + 1), Patient: renkei.PatientKey{Issuer: "HOSP", ID: fmt.Sprintf("P%07d", k%100000)},
				Study: fmt.Sprintf("1.2.392.200036.9116.2.6.1.%d", k), Detail: "shared"}
		}
		if err := db.Audit(ctx, events[:min(batch, n-done)]...); err != nil {
			t.Fatal(err)
		}
	}
	built := time.Since(start)
	start = time.Now()
	rep, err := db.VerifyAudit(ctx, map[string]ed25519.PublicKey{"bench": priv.Public().(ed25519.PublicKey)})
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if len(rep.Problems) > 0 || rep.Events != int64(n) {
		t.Fatalf("verify: %+v", rep)
	}
	t.Logf("built %d events in %v; verified them and %d checkpoints in %v (%.0f events/s)", n, built.Round(time.Second), rep.Checkpoints,
		took.Round(time.Millisecond), float64(n)/took.Seconds())
}
