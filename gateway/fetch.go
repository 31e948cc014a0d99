package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"renkei/dicom"
	"renkei/dimse"
)

const tagQueryRetrieveLevel dicom.Tag = 0x00080052

// FetchRequest is a request from renkei (GET /api/gateways/requests) to fetch a patient's earlier studies.
type FetchRequest struct {
	ID                     int64  `json:"id"`
	Issuer                 string `json:"issuer"`
	PatientID              string `json:"patientId"`
	Since                  string `json:"since"`
	Reason                 string `json:"reason"`
	RequestedBy            string `json:"requestedBy"`
	RequestedByInstitution string `json:"requestedByInstitution"`
}

// Fetcher answers renkei's requests for a patient's earlier studies: it asks the hospital's PACS (C-FIND, Study
// Root) and has it send them to the gateway (C-MOVE to the gateway's own AE title, which the PACS must know), whose
// Storage SCP spools them and whose uploader sends them to renkei as usual. Each request is audited on renkei (by the
// report) and here (AuditLog, one JSON line per request, fsynced).
type Fetcher struct {
	Server, Token string
	Client        *http.Client
	PACSAE        string // the PACS's AE title
	PACSAddr      string // host:port
	AE            string // the gateway's AE title: the C-MOVE destination
	Poll          time.Duration
	AuditLog      string
	Dialer        *dimse.Dialer
	Logger        *slog.Logger

	mu    sync.Mutex
	state FetchStatus
}

// FetchStatus is what the fetcher last did, for the status page.
type FetchStatus struct {
	PACS      string    `json:"pacs"`
	Done      int       `json:"done"` // requests answered since the gateway started
	LastDone  time.Time `json:"lastDone,omitzero"`
	LastError string    `json:"lastError,omitempty"`
}

// Status returns the fetcher's state.
func (f *Fetcher) Status() FetchStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.state
	st.PACS = f.PACSAE + "@" + f.PACSAddr
	return st
}

func (f *Fetcher) logger() *slog.Logger {
	return orDiscard(f.Logger)
}

// Run answers requests until ctx ends; a refused token ends it with ErrTokenRefused.
func (f *Fetcher) Run(ctx context.Context) error {
	poll := orDur(f.Poll, time.Minute)
	d := &Deliverer{Server: f.Server, Token: f.Token, Client: f.Client} // its authenticated GET
	for {
		var list []FetchRequest
		err := d.getJSON(ctx, "/api/gateways/requests", &list)
		if errors.Is(err, ErrTokenRefused) {
			return err
		}
		if err != nil && ctx.Err() == nil {
			f.logger().Warn("gateway: cannot read renkei's fetch requests", "err", err)
		}
		for _, req := range list {
			if ctx.Err() != nil {
				return nil
			}
			if err := f.answer(ctx, req); errors.Is(err, ErrTokenRefused) {
				return err
			}
		}
		if !pause(ctx, poll) {
			return nil
		}
	}
}

// answer fetches one request's studies and reports the outcome to renkei.
func (f *Fetcher) answer(ctx context.Context, req FetchRequest) error {
	log := f.logger().With("request", req.ID, "patient", req.PatientID, "requested_by", req.RequestedBy)
	if err := f.report(ctx, req.ID, "working", "", 0, 0); err != nil {
		return err // another gateway of the institution took it, or renkei is unreachable: next poll
	}
	log.Info("gateway: fetching earlier studies from the PACS")
	studies, instances, err := f.fetch(ctx, req)
	status, detail := "done", ""
	if err != nil {
		status, detail = "failed", err.Error()
		log.Warn("gateway: fetching from the PACS failed", "err", err)
	} else {
		log.Info("gateway: fetched from the PACS", "studies", studies, "instances", instances)
	}
	f.audit(req, status, detail, studies, instances)
	f.mu.Lock()
	f.state.Done++
	f.state.LastDone = time.Now()
	f.state.LastError = detail
	f.mu.Unlock()
	return f.report(ctx, req.ID, status, detail, studies, instances)
}

// fetch runs C-FIND and, per study, C-MOVE to the gateway.
func (f *Fetcher) fetch(ctx context.Context, req FetchRequest) (studies, instances int, err error) {
	dialer := f.Dialer
	if dialer == nil {
		dialer = &dimse.Dialer{Logger: f.Logger}
	}
	a, err := dialer.Dial(ctx, f.PACSAddr, f.AE, f.PACSAE, []dimse.PresentationContext{
		{AbstractSyntax: dimse.StudyRootQueryRetrieveInformationModelFind, TransferSyntaxes: []string{dicom.ExplicitVRLittleEndian, dicom.ImplicitVRLittleEndian}},
		{AbstractSyntax: dimse.StudyRootQueryRetrieveInformationModelMove, TransferSyntaxes: []string{dicom.ExplicitVRLittleEndian, dicom.ImplicitVRLittleEndian}}})
	if err != nil {
		return 0, 0, fmt.Errorf("the PACS %s cannot be reached: %w", f.PACSAE, err)
	}
	defer a.Release(ctx)
	q := &dicom.DataSet{}
	q.SetString(tagQueryRetrieveLevel, "CS", "STUDY")
	q.SetString(dicom.PatientID, "LO", req.PatientID)
	if req.Since != "" {
		q.SetString(dicom.StudyDate, "DA", req.Since+"-")
	} else {
		q.SetString(dicom.StudyDate, "DA", "")
	}
	q.SetString(dicom.StudyInstanceUID, "UI", "")
	var uids []string
	for ds, err := range a.Find(ctx, dimse.StudyRootQueryRetrieveInformationModelFind, q) {
		if err != nil {
			return 0, 0, fmt.Errorf("C-FIND at the PACS: %w", err)
		}
		if uid := ds.String(dicom.StudyInstanceUID); dicom.ValidUID(uid) {
			uids = append(uids, uid)
		}
	}
	var failures []string
	for _, uid := range uids {
		m := &dicom.DataSet{}
		m.SetString(tagQueryRetrieveLevel, "CS", "STUDY")
		m.SetString(dicom.StudyInstanceUID, "UI", uid)
		res, err := a.Move(ctx, dimse.StudyRootQueryRetrieveInformationModelMove, f.AE, m)
		instances += int(res.SubOperations.Completed) + int(res.SubOperations.Warning)
		if err != nil {
			failures = append(failures, fmt.Sprintf("study %s: %v", uid, err))
			continue
		}
		if res.SubOperations.Failed > 0 {
			failures = append(failures, fmt.Sprintf("study %s: %d instances not sent by the PACS", uid, res.SubOperations.Failed))
		}
		studies++
	}
	if len(failures) > 0 {
		return studies, instances, errors.New(strings.Join(failures, "; "))
	}
	return studies, instances, nil
}

func (f *Fetcher) report(ctx context.Context, id int64, status, detail string, studies, instances int) error {
	b, _ := json.Marshal(map[string]any{"status": status, "detail": detail, "studies": studies, "instances": instances})
	req, err := http.NewRequestWithContext(ctx, "POST", fmt.Sprintf("%s/api/gateways/requests/%d", strings.TrimSuffix(f.Server, "/"), id), bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+f.Token)
	c := f.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return ErrTokenRefused
	case resp.StatusCode/100 != 2:
		return fmt.Errorf("renkei answered %s: %s", resp.Status, problemDetail(body))
	}
	return nil
}

// audit appends the request's outcome to the gateway's own audit log (JSON lines, fsynced).
func (f *Fetcher) audit(req FetchRequest, status, detail string, studies, instances int) {
	if f.AuditLog == "" {
		return
	}
	line, _ := json.Marshal(map[string]any{"time": time.Now().Format(time.RFC3339), "action": "fetch", "request": req.ID,
		"requestedBy": req.RequestedBy, "requestedByInstitution": req.RequestedByInstitution, "patientId": req.PatientID,
		"reason": req.Reason, "pacs": f.PACSAE, "status": status, "detail": detail, "studies": studies, "instances": instances})
	fl, err := os.OpenFile(f.AuditLog, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err == nil {
		_, err = fl.Write(append(line, '\n'))
		if err == nil {
			err = fl.Sync()
		}
		fl.Close()
	}
	if err != nil {
		f.logger().Error("gateway: cannot write its audit log", "err", err)
	}
}
