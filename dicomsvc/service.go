// Package dicomsvc is the archive as a DIMSE service provider: it implements the handlers the dimse package declares
// (C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET, Storage Commitment) on top of archive.Service, so that C-STORE ingests
// through the same code as STOW-RS and C-FIND matches with the same code as QIDO-RS (dcm4chee's shape: one archive
// service behind every transport).
//
// Errors are mapped to DIMSE statuses here, in one place per service: archive failures keep the status the archive
// chose (0xA700 out of resources, 0xA900 data set does not match SOP class, 0xC000 cannot understand), with the
// user message of the renkei.Error as Error Comment; the chain goes to the log.
package dicomsvc

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"renkei"
	"renkei/archive"
	"renkei/dicom"
	"renkei/dimse"
)

// AERegistry is what dicomsvc needs of the AE registry (sqlstore.DB implements it).
type AERegistry interface {
	// LookupAE returns the registered AE with the title; an unknown title is a renkei.NotFound error.
	LookupAE(ctx context.Context, title string) (renkei.AE, error)
}

// Service serves the archive over DIMSE. Set the fields, then give Handlers and AcceptAE to a dimse.Server.
type Service struct {
	Archive *archive.Service
	AEs     AERegistry
	// AcceptAny accepts associations from any calling AE title and address (a demo setting, off by default). An
	// unregistered AE then acts for AnyInstitution.
	AcceptAny      bool
	AnyInstitution int64
	Logger         *slog.Logger
	Now            func() time.Time
	// Auditor records refused associations in the audit trail, where the monitoring rules see an unknown AE probing;
	// nil records nothing.
	Auditor Auditor
	// Connections records whether each admitted AE came over TLS, for the security status page; nil records nothing.
	Connections ConnectionRecorder

	seenMu sync.Mutex
	seen   map[string]renkei.AEConnection // what was last recorded per title
}

// ConnectionRecorder keeps how each AE title last associated (sqlstore.DB implements it).
type ConnectionRecorder interface {
	NoteAEConnection(ctx context.Context, c renkei.AEConnection) error
}

// connectionNoteEvery is how often an AE that keeps associating the same way is recorded again: an association per
// image must not become a write per image.
const connectionNoteEvery = 10 * time.Minute

// noteConnection records the transport of an admitted association when it changed or was last recorded long ago.
func (s *Service) noteConnection(ctx context.Context, p dimse.Peer) {
	if s.Connections == nil {
		return
	}
	now := time.Now()
	if s.Now != nil {
		now = s.Now()
	}
	c := renkei.AEConnection{Title: p.CallingAETitle, At: now, TLS: p.TLS != nil, Address: addrString(p.Addr)}
	s.seenMu.Lock()
	last, ok := s.seen[c.Title]
	if ok && last.TLS == c.TLS && now.Sub(last.At) < connectionNoteEvery {
		s.seenMu.Unlock()
		return
	}
	if s.seen == nil {
		s.seen = map[string]renkei.AEConnection{}
	}
	s.seen[c.Title] = c
	s.seenMu.Unlock()
	if err := s.Connections.NoteAEConnection(ctx, c); err != nil {
		s.logger().Warn("the AE's transport could not be recorded", "ae", c.Title, "err", err)
	}
}

// Auditor appends events to the audit chain (sqlstore.DB implements it).
type Auditor interface {
	Audit(ctx context.Context, events ...*renkei.AuditEvent) error
}

// registryTimeout bounds a look-up in the AE registry made where no context exists (association negotiation).
const registryTimeout = 5 * time.Second

// rejectTransient is A-ASSOCIATE-RJ rejected-transient, service-user, no-reason-given (PS3.8 Table 9-21): the
// registry could not be read, so the peer may try again.
const rejectTransient dimse.Reject = 0x020101

func (s *Service) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return s.Logger
}

// Handlers returns the DIMSE services of the archive: C-ECHO, C-STORE for every storage SOP class, C-FIND, C-MOVE
// (to registered destinations only) and C-GET in the Patient Root and Study Root models, and the Storage Commitment
// Push Model.
func (s *Service) Handlers() dimse.Handlers {
	return dimse.Handlers{
		Echo: func(context.Context, *dimse.Association) dimse.Status { return dimse.Success() },
		Store: dimse.StoreFunc(func(ctx context.Context, a *dimse.Association, req *dimse.StoreRequest, data io.Reader) dimse.Status {
			ctx, st := s.as(ctx, a)
			if st.IsFailure() {
				io.Copy(io.Discard, data)
				return st
			}
			return s.store(ctx, a, req, data)
		}),
		Find: dimse.FindFunc(func(ctx context.Context, a *dimse.Association, req *dimse.FindRequest, emit func(*dicom.DataSet) error) dimse.Status {
			ctx, st := s.as(ctx, a)
			if st.IsFailure() {
				return st
			}
			return s.find(ctx, a, req, emit)
		}),
		// PS3.4 C.5.1.1: of the C-FIND extended negotiation, combined date-time matching only (the index matches
		// the pairs as one range, sqlstore); no relational queries, no fuzzy semantic matching of names over DIMSE
		// (QIDO-RS has fuzzymatching), no timezone adjustment.
		FindOptions:     dimse.FindOptions{DateTimeMatching: true},
		Move:            dimse.RetrieveFunc(s.retrieveAs),
		MoveDestination: s.moveDestination,
		Get:             dimse.RetrieveFunc(s.retrieveAs),
		Commit:          committer{s},
	}
}

// as returns ctx carrying the principal of the association: its calling AE, acting for the AE's institution, so
// that the access layer and the audit trail apply to DIMSE exactly as to HTTP.
func (s *Service) as(ctx context.Context, a *dimse.Association) (context.Context, dimse.Status) {
	ae, err := s.callingAE(ctx, a)
	if err != nil {
		s.logger().Error("AE registry look-up failed", "ae", a.Peer().CallingAETitle, "err", err)
		return ctx, dimse.Failure(dimse.StatusOutOfResources, "the AE registry cannot be read; try again later")
	}
	inst := ae.InstitutionPK
	if inst == 0 && s.AcceptAny {
		inst = s.AnyInstitution
	}
	if inst == 0 {
		return ctx, dimse.Failure(dimse.StatusOutOfResources, "this AE title belongs to no institution")
	}
	peer := a.Peer()
	return renkei.WithPrincipal(ctx, &renkei.Principal{Kind: renkei.AEPrincipal, Name: peer.CallingAETitle, Institution: inst, Write: true,
		Session: fmt.Sprintf("%p", a), Source: peer.CallingAETitle + "@" + addrString(peer.Addr)}), dimse.Success()
}

// retrieveAs runs a C-MOVE or C-GET as the calling AE, marked as reading the data.
func (s *Service) retrieveAs(ctx context.Context, a *dimse.Association, req *dimse.RetrieveRequest) ([]dimse.Instance, dimse.Status) {
	ctx, st := s.as(ctx, a)
	if st.IsFailure() {
		return nil, st
	}
	return s.retrieve(renkei.WithAction(ctx, renkei.ActionRead), a, req)
}

// AcceptAE admits a peer whose calling AE title is registered and who connects from the registered host (when the
// registry names one). Others are rejected with "calling AE title not recognized" (PS3.8 Table 9-21), unless
// AcceptAny is set. A registry that cannot be read gives a transient rejection.
//
// On DICOM TLS with a client certificate (PS3.15 B.1), the certificate must be bound to the calling AE title: its
// subject common name or one of its DNS names is the title. This is checked even with AcceptAny, since a certificate
// issued to another AE is an impersonation, not a demo.
func (s *Service) AcceptAE(p dimse.Peer) (bool, dimse.Reject) {
	log := s.logger().With("calling_ae", p.CallingAETitle, "remote", addrString(p.Addr))
	if p.TLS != nil && len(p.TLS.PeerCertificates) > 0 {
		cert := p.TLS.PeerCertificates[0]
		if cert.Subject.CommonName != p.CallingAETitle && !slices.Contains(cert.DNSNames, p.CallingAETitle) {
			log.Warn("association rejected: the client certificate is not bound to the calling AE title", "subject", cert.Subject.String())
			ctx, cancel := context.WithTimeout(context.Background(), registryTimeout)
			defer cancel()
			s.auditRefusal(ctx, p, 0, "association rejected: the client certificate ("+cert.Subject.String()+") is not issued to this AE title")
			return false, dimse.RejectCallingAETitle
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), registryTimeout)
	defer cancel()
	if s.AcceptAny {
		s.noteConnection(ctx, p)
		return true, 0
	}
	ae, err := s.lookupAE(ctx, p.CallingAETitle)
	if err != nil {
		if renkei.ErrorKind(err) == renkei.NotFound {
			log.Warn("association from an unregistered AE title rejected")
			s.auditRefusal(ctx, p, 0, "association rejected: the calling AE title is not registered")
			return false, dimse.RejectCallingAETitle
		}
		log.Error("AE registry look-up failed", "err", err)
		return false, rejectTransient
	}
	if ae.Host != "" && !hostMatches(ctx, ae.Host, p.Addr) {
		log.Warn("association from a registered AE title but not from its registered host rejected", "host", ae.Host)
		s.auditRefusal(ctx, p, ae.InstitutionPK, "association rejected: the AE title is registered for host "+ae.Host+", not this address")
		return false, dimse.RejectCallingAETitle
	}
	s.noteConnection(ctx, p)
	return true, 0
}

// auditRefusal records a refused association (PS3.15 A.5.3.11 Security Alert in spirit): who called, from where,
// and why it was refused. institution is the registered AE's, 0 for an unknown title. A failure is logged only: the
// association is refused either way.
func (s *Service) auditRefusal(ctx context.Context, p dimse.Peer, institution int64, why string) {
	if s.Auditor == nil {
		return
	}
	e := &renkei.AuditEvent{Actor: p.CallingAETitle, ActorKind: renkei.AEPrincipal, Institution: institution, Action: renkei.ActionAssociate,
		Outcome: renkei.OutcomeFailure, Source: p.CallingAETitle + "@" + addrString(p.Addr), Detail: why + " (called AE " + p.CalledAETitle + ")"}
	if err := s.Auditor.Audit(ctx, e); err != nil {
		s.logger().Error("a refused association could not be audited", "ae", p.CallingAETitle, "err", err)
	}
}

// lookupAE looks an AE title up in the registry; without a registry every title is unknown.
func (s *Service) lookupAE(ctx context.Context, title string) (renkei.AE, error) {
	if s.AEs == nil {
		return renkei.AE{}, renkei.Errorf("dicomsvc.LookupAE", renkei.NotFound, "no AE registry")
	}
	return s.AEs.LookupAE(ctx, title)
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// hostMatches reports whether the remote address is the registered host: an IP address, or a name that resolves to
// the remote address.
func hostMatches(ctx context.Context, host string, remote net.Addr) bool {
	if remote == nil {
		return false
	}
	var ip netip.Addr
	if ta, ok := remote.(*net.TCPAddr); ok {
		ip, _ = netip.AddrFromSlice(ta.IP)
	} else if ap, err := netip.ParseAddrPort(remote.String()); err == nil {
		ip = ap.Addr()
	}
	ip = ip.Unmap()
	if !ip.IsValid() {
		return false
	}
	if want, err := netip.ParseAddr(host); err == nil {
		return want.Unmap() == ip
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if a.Unmap() == ip {
			return true
		}
	}
	return false
}

// moveDestination maps a C-MOVE destination (or the requestor of a storage commitment reported on a new
// association) to its registered address. Only registered AEs with a host and a port are destinations: C-MOVE to
// anything else is answered 0xA801 by the dimse package (PS3.4 C.4.2.1.5).
func (s *Service) moveDestination(ctx context.Context, a *dimse.Association, title string) (string, bool) {
	ae, err := s.lookupAE(ctx, title)
	if err != nil {
		if renkei.ErrorKind(err) != renkei.NotFound {
			s.logger().Error("AE registry look-up failed", "ae", title, "err", err)
		}
		return "", false
	}
	if ae.Host == "" || ae.Port == 0 {
		s.logger().Warn("AE is registered without an address to send to", "ae", title)
		return "", false
	}
	// Images leave only to the caller's own institution's AEs: a C-MOVE to another institution's PACS would hand
	// over data that was never shared with it. An unregistered caller admitted by AcceptAny acts for AnyInstitution
	// (as in s.as), so it too moves only to AnyInstitution's AEs.
	calling, err := s.callingAE(ctx, a)
	inst := calling.InstitutionPK
	if inst == 0 && s.AcceptAny {
		inst = s.AnyInstitution
	}
	if err != nil || inst == 0 || inst != ae.InstitutionPK {
		s.logger().Warn("C-MOVE to an AE of another institution refused", "ae", title, "calling_ae", a.Peer().CallingAETitle)
		return "", false
	}
	addr := net.JoinHostPort(ae.Host, strconv.Itoa(ae.Port))
	if ae.TLS {
		return "tls://" + addr, true // the dimse server opens it with its ClientTLSConfig
	}
	return addr, true
}

// callingAE returns the registry entry of the association's calling AE: the zero AE (with its title) when it is not
// registered, which AcceptAE decided was acceptable when the association was negotiated.
func (s *Service) callingAE(ctx context.Context, a *dimse.Association) (renkei.AE, error) {
	title := a.Peer().CallingAETitle
	ae, err := s.lookupAE(ctx, title)
	if err != nil && renkei.ErrorKind(err) == renkei.NotFound {
		return renkei.AE{Title: title}, nil
	}
	return ae, err
}

func (s *Service) now() time.Time {
	if s.Now == nil {
		return time.Now()
	}
	return s.Now()
}
