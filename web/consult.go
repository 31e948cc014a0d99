package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"renkei"
	"renkei/consult"
)

// Live consults: a room per consult, joined over a WebSocket by its members only. The creator invites users of
// other institutions; when the creator's institution holds the study, the invitation shares the study with the
// invitee for a day (a share with purpose "consult", which checks consent).

// ConsultStore keeps consults (implemented by sqlstore.DB).
type ConsultStore interface {
	CreateConsult(ctx context.Context, c *renkei.Consult, audit *renkei.AuditEvent) error
	InviteToConsult(ctx context.Context, id int64, m renkei.ConsultMember, share *renkei.Share, audit *renkei.AuditEvent) error
	Consult(ctx context.Context, id int64) (renkei.Consult, error)
	ConsultsOf(ctx context.Context, user int64) ([]renkei.Consult, error)
	AddConsultEvent(ctx context.Context, id int64, e renkei.ConsultEvent) error
	ConsultEvents(ctx context.Context, id int64) ([]renkei.ConsultEvent, error)
}

// UseConsults serves live consults from store, with rooms on an in-process hub.
func (s *Server) UseConsults(store ConsultStore) {
	s.Consults = store
	s.Rooms = consult.NewRooms(consult.NewLocalHub())
	s.Rooms.Now = func() time.Time { return s.Now() }
	s.Rooms.Record = func(room int64, m consult.Message) {
		body := m.Text
		switch m.Type {
		case consult.TypeAnnotate:
			body = string(m.Annotation)
		case consult.TypeControl:
			body = m.Driver
		case consult.TypeRequest, consult.TypeJoin, consult.TypeLeave, consult.TypeChat, consult.TypeClear:
		default:
			return
		}
		if err := store.AddConsultEvent(context.Background(), room, renkei.ConsultEvent{At: m.At, Login: m.From, Kind: m.Type, Body: body}); err != nil {
			s.Logger.Error("a consult event could not be kept", "consult", room, "err", err)
		}
	}
}

type consultJSON struct {
	ID        int64                 `json:"id"`
	Study     string                `json:"study"`
	Title     string                `json:"title"`
	CreatedBy string                `json:"createdBy"`
	CreatedAt time.Time             `json:"createdAt"`
	Members   []string              `json:"members"`
	Events    []renkei.ConsultEvent `json:"events,omitempty"`
}

func toConsultJSON(c renkei.Consult) consultJSON {
	out := consultJSON{ID: c.ID, Study: c.StudyUID, Title: c.Title, CreatedBy: c.CreatedByName, CreatedAt: c.CreatedAt, Members: []string{}}
	for _, m := range c.Members {
		out.Members = append(out.Members, m.Login)
	}
	return out
}

func (s *Server) consultsReady(w http.ResponseWriter, r *http.Request) (*renkei.Principal, bool) {
	if s.Consults == nil {
		s.problem(w, r, renkei.Errorj("web", renkei.Unavailable, "このサーバーでは相談(画像を見ながらのリアルタイムの相談)を使えません。",
			"live consults are not available on this server"))
		return nil, false
	}
	p := renkei.PrincipalFrom(r.Context())
	if p.Kind != renkei.UserPrincipal || !p.Role.Staff() {
		s.problem(w, r, renkei.Errorj("web.consult", renkei.Forbidden, "相談は地域の医療機関の職員のための機能です。", "consults are for the region's staff"))
		return nil, false
	}
	return p, true
}

// member returns the consult if the caller is one of its members; anyone else gets NotFound, as for one that does
// not exist.
func (s *Server) member(w http.ResponseWriter, r *http.Request) (renkei.Consult, *renkei.Principal, bool) {
	p, ok := s.consultsReady(w, r)
	if !ok {
		return renkei.Consult{}, nil, false
	}
	id, err := pathID(r)
	if err == nil {
		var c renkei.Consult
		if c, err = s.Consults.Consult(r.Context(), id); err == nil {
			if slices.ContainsFunc(c.Members, func(m renkei.ConsultMember) bool { return m.User == p.ID }) {
				visible, verr := s.stillSees(r, p, c)
				if verr != nil {
					s.problem(w, r, verr)
					return renkei.Consult{}, nil, false
				}
				if visible {
					return c, p, true
				}
			}
		}
	}
	s.problem(w, r, renkei.Errorj("web.consult", renkei.NotFound, "該当する相談はありません。", "there is no such consult"))
	return renkei.Consult{}, nil, false
}

// stillSees reports whether a member of another institution than the study's may still see it: membership came
// with a share (or rested on one the caller had), and when that ends (revoked, expired, the patient's consent
// withdrawn) the room's chat, drawings and views of the patient end for them too.
func (s *Server) stillSees(r *http.Request, p *renkei.Principal, c renkei.Consult) (bool, error) {
	if p.Institution == c.StudyOwner {
		return true, nil
	}
	recs, err := s.DICOMweb.Archive.QueryStudies(r.Context(), &renkei.Query{Level: renkei.StudyLevel, Limit: 1, Owner: c.StudyOwner,
		Matches: []renkei.Match{{Keyword: "StudyInstanceUID", Kind: renkei.MatchSingle, Value: c.StudyUID}}})
	return len(recs) > 0, err
}

// createConsult starts a consult on a study the caller may see: {study, title}.
func (s *Server) createConsult(w http.ResponseWriter, r *http.Request) {
	p, ok := s.consultsReady(w, r)
	if !ok {
		return
	}
	var req struct {
		Study string `json:"study"`
		Title string `json:"title"`
	}
	if err := readJSON(r, &req); err != nil {
		s.problem(w, r, err)
		return
	}
	recs, err := s.DICOMweb.Archive.QueryStudies(r.Context(), &renkei.Query{Level: renkei.StudyLevel, Limit: 10,
		Matches: []renkei.Match{{Keyword: "StudyInstanceUID", Kind: renkei.MatchSingle, Value: req.Study}}})
	if err != nil {
		s.problem(w, r, err)
		return
	}
	if len(recs) == 0 {
		s.problem(w, r, renkei.Errorj("web.consult", renkei.NotFound, "該当する検査はありません。", "there is no such study"))
		return
	}
	st := recs[0]
	for _, x := range recs {
		if x.Institution == p.Institution {
			st = x // the caller's own copy, when it has one
		}
	}
	c := renkei.Consult{StudyUID: st.StudyInstanceUID, StudyOwner: st.Institution, Patient: st.Patient, Title: strings.TrimSpace(req.Title),
		CreatedBy: p.ID, CreatedByName: p.Name, Institution: p.Institution}
	e := renkei.EventFor(p, renkei.ActionShare, renkei.OutcomeSuccess)
	e.DataInstitution, e.Patient, e.Study, e.Detail = st.Institution, st.Patient, st.StudyInstanceUID, "consult started"
	if err := s.Consults.CreateConsult(r.Context(), &c, &e); err != nil {
		s.problem(w, r, err)
		return
	}
	c, _ = s.Consults.Consult(r.Context(), c.ID)
	writeJSON(w, http.StatusCreated, toConsultJSON(c))
}

// inviteToConsult adds a user (by login) to the room; a user of another institution gets the study shared with them
// for a day, when the caller's institution holds it.
func (s *Server) inviteToConsult(w http.ResponseWriter, r *http.Request) {
	c, p, ok := s.member(w, r)
	if !ok {
		return
	}
	var req struct {
		Login string `json:"login"`
	}
	if err := readJSON(r, &req); err != nil {
		s.problem(w, r, err)
		return
	}
	u, _, err := s.Store.UserByLogin(r.Context(), req.Login)
	if err != nil || !u.Role.Staff() || u.Disabled {
		s.problem(w, r, renkei.Errorj("web.consult", renkei.NotFound, "職員 %q は見つかりません。", "there is no staff user %q", req.Login))
		return
	}
	var share *renkei.Share
	if u.Institution.PK != c.StudyOwner {
		if p.Institution != c.StudyOwner {
			s.problem(w, r, renkei.Errorj("web.consult", renkei.Forbidden, "他の施設の方を招待できるのは、この検査を保有する施設だけです。",
				"only the institution that holds the study may invite someone from another institution"))
			return
		}
		share = &renkei.Share{FromInstitution: c.StudyOwner, Patient: c.Patient, Studies: []string{c.StudyUID}, ToUser: u.PK,
			Purpose: renkei.PurposeConsult, Reason: fmt.Sprintf("consult %d", c.ID), CreatedBy: p.ID, CreatedByName: p.Name,
			ExpiresAt: s.Now().Add(24 * time.Hour)}
	}
	e := renkei.EventFor(p, renkei.ActionShare, renkei.OutcomeSuccess)
	e.DataInstitution, e.Patient, e.Study, e.Detail = c.StudyOwner, c.Patient, c.StudyUID, fmt.Sprintf("invited %s to consult %d", u.Login, c.ID)
	if err := s.Consults.InviteToConsult(r.Context(), c.ID, renkei.ConsultMember{User: u.PK, Login: u.Login, InvitedBy: p.Name}, share, &e); err != nil {
		s.problem(w, r, err)
		return
	}
	publishStudy(s.Hub, u.Institution.PK, u.PK, c.StudyUID)
	c, _ = s.Consults.Consult(r.Context(), c.ID)
	writeJSON(w, http.StatusOK, toConsultJSON(c))
}

// colleagues lists the active staff of the caller's institution (login, name, role), for choosing whom to invite to
// a consult instead of remembering a login. Only the caller's own institution: the region's staff lists are not
// every member's to browse (another institution's login can still be typed). Forbidden to non-staff.
func (s *Server) colleagues(w http.ResponseWriter, r *http.Request) {
	p := renkei.PrincipalFrom(r.Context())
	if !staff(p) {
		s.problem(w, r, forbidden("web.colleagues", "施設の職員の一覧は職員だけが見られます", "only staff see their institution's colleagues"))
		return
	}
	list, err := s.Store.Users(r.Context(), p.Institution)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	type colleague struct {
		Login string      `json:"login"`
		Name  string      `json:"name"`
		Role  renkei.Role `json:"role"`
	}
	out := []colleague{}
	for _, u := range list {
		if u.Role.Staff() && !u.Disabled && u.Institution.PK == p.Institution {
			out = append(out, colleague{u.Login, u.Name, u.Role})
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getConsult(w http.ResponseWriter, r *http.Request) {
	c, _, ok := s.member(w, r)
	if !ok {
		return
	}
	out := toConsultJSON(c)
	out.Events, _ = s.Consults.ConsultEvents(r.Context(), c.ID)
	writeJSON(w, http.StatusOK, out)
}

// listConsults lists the caller's consults (started or invited to).
func (s *Server) listConsults(w http.ResponseWriter, r *http.Request) {
	p, ok := s.consultsReady(w, r)
	if !ok {
		return
	}
	list, err := s.Consults.ConsultsOf(r.Context(), p.ID)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	out := []consultJSON{}
	for _, c := range list {
		// A consult whose study the caller no longer sees is not theirs any more (its title may name the patient).
		if ok, err := s.stillSees(r, p, c); err != nil {
			s.problem(w, r, err)
			return
		} else if !ok {
			continue
		}
		out = append(out, toConsultJSON(c))
	}
	writeJSON(w, http.StatusOK, out)
}

// consultSocket is the room's WebSocket: the snapshot first, then every message of the room, and what the member
// says applied by the room's rules. Only members connect; the browser's Origin must be this server's (the
// library's default check), so another site cannot open it with the user's cookie.
func (s *Server) consultSocket(w http.ResponseWriter, r *http.Request) {
	c, p, ok := s.member(w, r)
	if !ok {
		return
	}
	e := renkei.EventFor(p, renkei.ActionRead, renkei.OutcomeSuccess)
	e.DataInstitution, e.Patient, e.Study, e.Detail, e.Purpose = c.StudyOwner, c.Patient, c.StudyUID, fmt.Sprintf("joined consult %d", c.ID), string(renkei.PurposeConsult)
	if err := s.Store.Audit(r.Context(), &e); err != nil {
		s.problem(w, r, err)
		return
	}
	conn, err := websocket.Accept(w, r, nil)
	if err != nil {
		return // Accept has answered
	}
	defer conn.CloseNow()
	conn.SetReadLimit(128 << 10)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	in, _ := s.Store.InstitutionByPK(ctx, p.Institution)
	me := consult.Participant{Login: p.Name, Name: p.Name, Institution: in.Name}
	snap, msgs, leave := s.Rooms.Join(c.ID, me)
	defer leave()
	snap.ICEServers = s.ICEServers
	send := func(m consult.Message) error {
		b, _ := json.Marshal(m)
		wctx, done := context.WithTimeout(ctx, 10*time.Second)
		defer done()
		return conn.Write(wctx, websocket.MessageText, b)
	}
	if err := send(snap); err != nil {
		return
	}
	replies := make(chan consult.Message, 8)
	lang := requestLang(r)
	go func() {
		defer cancel()
		for {
			_, b, err := conn.Read(ctx)
			if err != nil {
				return
			}
			var m consult.Message
			if json.Unmarshal(b, &m) != nil {
				continue
			}
			if reply := s.Rooms.Handle(c.ID, me, m); reply != nil {
				select {
				case replies <- *reply:
				default:
				}
				continue
			}
			// What is said, drawn or handed on in the room is in the audit trail too (not the view's moves).
			switch m.Type {
			case consult.TypeAnnotate, consult.TypeClear, consult.TypeChat, consult.TypeGrant:
				e := renkei.EventFor(p, renkei.ActionConsult, renkei.OutcomeSuccess)
				e.DataInstitution, e.Patient, e.Study, e.Purpose = c.StudyOwner, c.Patient, c.StudyUID, string(renkei.PurposeConsult)
				e.Detail = fmt.Sprintf("consult %d: %s %s", c.ID, m.Type, strings.TrimSpace(m.To+" "+truncate(m.Text, 200)))
				if err := s.Store.Audit(ctx, &e); err != nil {
					s.Logger.Error("a consult event could not be audited", "consult", c.ID, "err", err)
					return // fail closed: the connection ends
				}
			}
		}
	}()
	// A member of another institution stays while they may see the study: when their share ends (revoked, expired,
	// the patient's consent withdrawn) the open room ends for them too, at the latest a minute later.
	checked := s.Now()
	mayStay := func() bool {
		if p.Institution == c.StudyOwner || s.Now().Sub(checked) < consultRecheck {
			return true
		}
		checked = s.Now()
		ok, err := s.stillSees(r, p, c)
		if err != nil {
			s.Logger.Error("a consult member's access could not be checked", "consult", c.ID, "err", err)
		}
		return err == nil && ok // fail closed: the client connects again
	}
	ping := time.NewTicker(30 * time.Second)
	defer ping.Stop()
	for {
		select {
		case <-ctx.Done():
			conn.Close(websocket.StatusNormalClosure, "")
			return
		case m := <-replies:
			if m.Japanese != "" && lang == "ja" {
				m.Text = m.Japanese // a refusal, said to this participant in their language
			}
			if send(m) != nil {
				return
			}
		case m := <-msgs:
			if !mayStay() {
				conn.Close(websocket.StatusPolicyViolation, "you may no longer see this study")
				return
			}
			if (m.Type == consult.TypeSignal || m.Type == consult.TypeRequest) && m.To != "" && m.To != me.Login {
				continue // addressed to someone else
			}
			if m.Type == consult.TypeSnapshot { // the room as another node knows it (Rooms.Connect)
				m.ICEServers = s.ICEServers
			}
			if send(m) != nil {
				return
			}
		case <-ping.C:
			if !mayStay() {
				conn.Close(websocket.StatusPolicyViolation, "you may no longer see this study")
				return
			}
			pctx, done := context.WithTimeout(ctx, 10*time.Second)
			err := conn.Ping(pctx)
			done()
			if err != nil {
				return
			}
		}
	}
}

// consultRecheck is how often an open consult socket checks again that its member may still see the study.
const consultRecheck = time.Minute

// truncate cuts s to at most n bytes on a character boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
