package atna_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"renkei"
	"renkei/atna"
)

// The syslog frame a collector parses (RFC 5424 6, RFC 5425 4.3): PRI by outcome, the fixed fields, the sequence
// number wrapping as RFC 5424 7.3.1 says, the BOM before the UTF-8 XML, and the octet count.
func TestSyslogMessage(t *testing.T) {
	at := time.Date(2026, 11, 3, 0, 30, 0, 123e6, time.FixedZone("JST", 9*3600))
	for _, tc := range []struct {
		name string
		e    renkei.AuditEvent
		head string
	}{
		{"a read", renkei.AuditEvent{Seq: 7, Time: at, Action: renkei.ActionRead, Outcome: renkei.OutcomeSuccess},
			`<85>1 2026-11-02T15:30:00.123Z host1 renkei 4242 IHE+RFC-3881 [meta sequenceId="7"] `},
		{"a failed login", renkei.AuditEvent{Seq: 8, Time: at, Action: renkei.ActionLogin, Outcome: renkei.OutcomeFailure},
			`<84>1 2026-11-02T15:30:00.123Z host1 renkei 4242 IHE+RFC-3881 [meta sequenceId="8"] `},
		{"break-glass", renkei.AuditEvent{Seq: 9, Time: at, Action: renkei.ActionBreakGlass, Outcome: renkei.OutcomeSuccess},
			`<84>1 2026-11-02T15:30:00.123Z host1 renkei 4242 IHE+RFC-3881 [meta sequenceId="9"] `},
		{"past the sequence's end", renkei.AuditEvent{Seq: 2147483648, Time: at, Action: renkei.ActionQuery},
			`<85>1 2026-11-02T15:30:00.123Z host1 renkei 4242 IHE+RFC-3881 [meta sequenceId="1"] `},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, err := atna.Message(&tc.e, atna.Source{ID: "renkei-1"})
			if err != nil {
				t.Fatal(err)
			}
			// A host name with a space and a line break loses them: header fields are printable ASCII without spaces.
			msg := atna.SyslogMessage(atna.Header{Hostname: "host 1\n", ProcID: "4242"}, &tc.e, body)
			if want := tc.head + "\uFEFF" + string(body); string(msg) != want {
				t.Errorf("message\n got %q\nwant %q", msg[:min(len(msg), 120)], want[:120])
			}
			framed := atna.Frame(msg)
			n, rest, _ := strings.Cut(string(framed), " ")
			if l, err := strconv.Atoi(n); err != nil || l != len(msg) || rest != string(msg) {
				t.Errorf("frame %q does not count the message's %d bytes", n, len(msg))
			}
		})
	}
}

// An action renkei adds later is still exported, as Application Activity with its own name.
func TestClassifyUnknownAction(t *testing.T) {
	c := atna.Classify(&renkei.AuditEvent{Action: "teleport", Outcome: renkei.OutcomeSuccess})
	if c.EventID != atna.EventApplicationActivity || len(c.Types) != 1 || c.Types[0].Code != "teleport" {
		t.Errorf("an unknown action: %+v", c)
	}
}
