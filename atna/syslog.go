package atna

import (
	"fmt"
	"strings"

	"renkei"
)

// Syslog header fields (RFC 5424 6.2). IHE ATNA (ITI TF-2 3.20.4.2.2) asks for MSGID "IHE+RFC-3881" whichever
// schema the message uses, and for the security/authorization facility (10).
const (
	msgID            = "IHE+RFC-3881"
	facilityAuthpriv = 10
	severityNotice   = 5
	severityWarning  = 4
	maxSequenceID    = 2147483647 // RFC 5424 7.3.1: sequenceId is 1…2147483647, then wraps to 1
	utf8BOM          = "\xEF\xBB\xBF"
)

// Header is what every syslog message of one exporter carries.
type Header struct {
	Hostname string // HOSTNAME: this machine (printable ASCII; "-" when unknown)
	AppName  string // APP-NAME, default "renkei"
	ProcID   string // PROCID, e.g. the process id
}

// SyslogMessage wraps an audit message in an RFC 5424 syslog message: PRI (authpriv, notice; warning when the event
// failed), the event's time, HOSTNAME, APP-NAME, PROCID, MSGID "IHE+RFC-3881", the structured element
// [meta sequenceId="…"] carrying the event's Seq (RFC 5424 7.3.1, wrapping past 2147483647) so that a collector
// can tell a resent message from a new one, and the XML as UTF-8 after a BOM (RFC 5424 6.4).
func SyslogMessage(h Header, e *renkei.AuditEvent, xmlMsg []byte) []byte {
	sev := severityNotice
	if e.Outcome != "" && e.Outcome != renkei.OutcomeSuccess || e.Action == renkei.ActionDenied || e.Action == renkei.ActionBreakGlass {
		sev = severityWarning
	}
	seq := (e.Seq-1)%maxSequenceID + 1
	head := fmt.Sprintf("<%d>1 %s %s %s %s %s [meta sequenceId=\"%d\"] ", facilityAuthpriv*8+sev, timestamp(e.Time),
		headerField(h.Hostname, 255), headerField(or(h.AppName, "renkei"), 48), headerField(h.ProcID, 128), msgID, seq)
	b := make([]byte, 0, len(head)+len(utf8BOM)+len(xmlMsg))
	b = append(b, head...)
	b = append(b, utf8BOM...)
	return append(b, xmlMsg...)
}

// Frame adds RFC 5425 octet-counting framing: the message's length in bytes, a space, the message.
func Frame(msg []byte) []byte {
	return append(fmt.Appendf(nil, "%d ", len(msg)), msg...)
}

// headerField makes s a valid header field: printable US-ASCII without spaces, at most n characters, "-" if empty.
func headerField(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < 33 || r > 126 {
			return -1
		}
		return r
	}, s)
	if len(s) > n {
		s = s[:n]
	}
	if s == "" {
		return "-"
	}
	return s
}
