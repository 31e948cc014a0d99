package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"renkei/dicom"
	"renkei/dimse"
)

// Patient identification attributes the gateway rewrites (PS3.3 C.7.1.1).
const (
	tagOtherPatientIDsSequence dicom.Tag = 0x00101002
	tagTypeOfPatientID         dicom.Tag = 0x00100022
)

// InboxItem is one share with the hospital, as renkei's GET /api/gateways/inbox lists it.
type InboxItem struct {
	Share           int64     `json:"share"`
	FromInstitution string    `json:"fromInstitution"`
	Purpose         string    `json:"purpose"`
	SharedAt        time.Time `json:"sharedAt"`
	Issuer          string    `json:"issuer"`
	PatientID       string    `json:"patientId"`
	LocalIssuer     string    `json:"localIssuer"`
	LocalPatientID  string    `json:"localPatientId"`
	Studies         []string  `json:"studies"`
	// Instances is how many instances each study holds in renkei now.
	Instances map[string]int `json:"instances"`
}

// Deliverer brings what other institutions shared with the hospital (referral images, reading reports, reply
// letters filed as DICOM) into the hospital's PACS: it asks renkei for its inbox, fetches each instance not yet
// delivered with WADO-RS, sets the patient's ID to the hospital's own (the sender's ID kept in
// OtherPatientIDsSequence), and C-STOREs it to every destination AE. All connections go out from the hospital.
//
// renkei stays the durable copy: an instance is recorded as delivered (an fsynced ledger) only after every
// destination answered success, so a crash or a refusing PACS means it is fetched and sent again later.
type Deliverer struct {
	Server string
	Token  string
	Client *http.Client
	// Destinations maps the AE titles of the hospital's PACS (and workstations) to host:port.
	Destinations map[string]string
	AE           string // the gateway's AE title, the calling AE of the C-STOREs
	Ledger       *Ledger
	Poll         time.Duration
	Dialer       *dimse.Dialer
	Logger       *slog.Logger

	mu    sync.Mutex
	state InboundStatus
	// complete remembers, per study, how many instances it had when all of them were delivered: a study whose count
	// the inbox still gives is not listed again at every poll. (In memory: after a restart each study is listed
	// once and the ledger skips what was sent.)
	complete map[string]int
}

// InboundStatus is what the deliverer last did, for the status page.
type InboundStatus struct {
	Destinations  []string  `json:"destinations"`
	Delivered     int       `json:"delivered"` // instances since the gateway started
	LastDelivered time.Time `json:"lastDelivered,omitzero"`
	LastPoll      time.Time `json:"lastPoll,omitzero"`
	LastError     string    `json:"lastError,omitempty"`
}

// Status returns the deliverer's state.
func (d *Deliverer) Status() InboundStatus {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.state
	st.Destinations = nil
	for ae := range d.Destinations {
		st.Destinations = append(st.Destinations, ae)
	}
	sort.Strings(st.Destinations)
	return st
}

func (d *Deliverer) logger() *slog.Logger {
	return orDiscard(d.Logger)
}

// Run polls the inbox until ctx ends. A refused token ends it with ErrTokenRefused.
func (d *Deliverer) Run(ctx context.Context) error {
	poll := orDur(d.Poll, time.Minute)
	for {
		err := d.Once(ctx)
		d.mu.Lock()
		d.state.LastPoll = time.Now()
		if err != nil && ctx.Err() == nil {
			d.state.LastError = err.Error()
		} else if err == nil {
			d.state.LastError = ""
		}
		d.mu.Unlock()
		if errors.Is(err, ErrTokenRefused) {
			return err
		}
		if err != nil && ctx.Err() == nil {
			d.logger().Warn("gateway: delivering shared images to the PACS", "err", err)
		}
		if !pause(ctx, poll) {
			return nil
		}
	}
}

// Once delivers everything in the inbox that was not delivered yet.
func (d *Deliverer) Once(ctx context.Context) error {
	var items []InboxItem
	if err := d.getJSON(ctx, "/api/gateways/inbox", &items); err != nil {
		return err
	}
	var errs []error
	for _, it := range items {
		for _, study := range it.Studies {
			n, counted := it.Instances[study]
			if done, ok := d.complete[study]; ok && counted && done == n {
				continue
			}
			if err := d.deliverStudy(ctx, it, study); err != nil {
				errs = append(errs, fmt.Errorf("study %s shared by %s: %w", study, it.FromInstitution, err))
				continue
			}
			if counted {
				if d.complete == nil {
					d.complete = map[string]int{}
				}
				d.complete[study] = n
			}
		}
	}
	return errors.Join(errs...)
}

type instanceRef struct{ series, sop, class string }

func (d *Deliverer) deliverStudy(ctx context.Context, it InboxItem, study string) error {
	var list []map[string]struct{ Value []any }
	if err := d.getJSON(ctx, "/dicomweb/studies/"+url.PathEscape(study)+"/instances", &list); err != nil {
		return err
	}
	var todo []instanceRef
	for _, m := range list {
		ref := instanceRef{series: first(m["0020000E"].Value), sop: first(m["00080018"].Value), class: first(m["00080016"].Value)}
		if ref.sop == "" || ref.series == "" {
			continue
		}
		for ae := range d.Destinations {
			if _, done := d.Ledger.Has(deliveredKey(ref.sop, ae)); !done {
				todo = append(todo, ref)
				break
			}
		}
	}
	if len(todo) == 0 {
		return nil
	}
	log := d.logger().With("study", study, "from", it.FromInstitution, "instances", len(todo))
	log.Info("gateway: delivering shared images to the PACS")
	// Each instance is fetched once and sent to every destination on an association of its own (its SOP class and
	// transfer syntax are known only once fetched); a study of many instances would be faster on one association.
	for _, ref := range todo {
		file, err := d.fetch(ctx, study, ref)
		if err != nil {
			return err
		}
		if it.LocalPatientID != "" {
			if file, err = relabel(file, it); err != nil {
				return fmt.Errorf("instance %s: %w", ref.sop, err)
			}
		}
		var delivered []Entry
		for ae, addr := range d.Destinations {
			key := deliveredKey(ref.sop, ae)
			if _, done := d.Ledger.Has(key); done {
				continue
			}
			if err := d.store(ctx, ae, addr, file); err != nil {
				return fmt.Errorf("C-STORE of %s to %s: %w", ref.sop, ae, err)
			}
			delivered = append(delivered, Entry{SOPInstanceUID: key, SOPClassUID: ref.class})
		}
		if err := d.Ledger.Record(delivered); err != nil {
			return err
		}
		d.mu.Lock()
		d.state.Delivered++
		d.state.LastDelivered = time.Now()
		d.mu.Unlock()
	}
	log.Info("gateway: shared images delivered to the PACS")
	return nil
}

func deliveredKey(sop, ae string) string { return sop + ">" + ae }

func first(v []any) string {
	if len(v) == 0 {
		return ""
	}
	s, _ := v[0].(string)
	return s
}

func (d *Deliverer) client() *http.Client {
	if d.Client != nil {
		return d.Client
	}
	return http.DefaultClient
}

func (d *Deliverer) get(ctx context.Context, path, accept string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", strings.TrimSuffix(d.Server, "/")+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+d.Token)
	req.Header.Set("Accept", accept)
	resp, err := d.client().Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusUnauthorized {
		resp.Body.Close()
		return nil, ErrTokenRefused
	}
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		return nil, fmt.Errorf("renkei answered %s for %s: %s", resp.Status, path, problemDetail(b))
	}
	return resp, nil
}

func (d *Deliverer) getJSON(ctx context.Context, path string, v any) error {
	resp, err := d.get(ctx, path, "application/json, application/dicom+json")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNoContent {
		return nil
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(v)
}

// fetch retrieves one instance as stored (WADO-RS, any transfer syntax).
func (d *Deliverer) fetch(ctx context.Context, study string, ref instanceRef) ([]byte, error) {
	resp, err := d.get(ctx, "/dicomweb/studies/"+url.PathEscape(study)+"/series/"+url.PathEscape(ref.series)+"/instances/"+url.PathEscape(ref.sop),
		`multipart/related; type="application/dicom"; transfer-syntax=*`)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	_, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil {
		return nil, fmt.Errorf("WADO-RS answer: %w", err)
	}
	part, err := multipart.NewReader(resp.Body, params["boundary"]).NextPart()
	if err != nil {
		return nil, fmt.Errorf("WADO-RS answer: %w", err)
	}
	return io.ReadAll(io.LimitReader(part, 4<<30))
}

// relabel sets PatientID and IssuerOfPatientID to the hospital's own and keeps the sender's in
// OtherPatientIDsSequence (PS3.3 C.7.1.1), so that the images file under the hospital's patient in its PACS.
func relabel(file []byte, it InboxItem) ([]byte, error) {
	f, err := dicom.Parse(bytes.NewReader(file), dicom.DefaultReadOptions)
	if err != nil {
		return nil, err
	}
	if f.Deflated {
		return file, nil // rewriting would mean re-deflating; the sender's ID stays (rare syntax)
	}
	ds := f.DataSet
	origID, origIssuer := ds.String(dicom.PatientID), ds.String(dicom.IssuerOfPatientID)
	if origID == it.LocalPatientID && origIssuer == it.LocalIssuer {
		return file, nil
	}
	if origIssuer == "" && origID == it.PatientID {
		origIssuer = it.Issuer // renkei gave the sender's issuer to a file that carried none
	}
	item := &dicom.DataSet{}
	item.SetString(dicom.PatientID, "LO", origID)
	if origIssuer != "" {
		item.SetString(dicom.IssuerOfPatientID, "LO", origIssuer)
	}
	item.SetString(tagTypeOfPatientID, "CS", "TEXT")
	other := ds.Get(tagOtherPatientIDsSequence)
	if other == nil || other.VR != "SQ" {
		other = &dicom.Element{Tag: tagOtherPatientIDsSequence, VR: "SQ", Length: dicom.UndefinedLength}
	}
	other.Items = append(other.Items, item)
	ds.Set(other)
	ds.SetString(dicom.PatientID, "LO", it.LocalPatientID)
	if it.LocalIssuer != "" {
		ds.SetString(dicom.IssuerOfPatientID, "LO", it.LocalIssuer)
	} else {
		ds.Remove(dicom.IssuerOfPatientID)
	}
	// The data set is written in explicit VR little endian: an uncompressed file in another syntax says so.
	switch f.TransferSyntaxUID {
	case dicom.ImplicitVRLittleEndian, dicom.ExplicitVRBigEndian:
		f.Meta.SetString(dicom.TransferSyntaxUID, "UI", dicom.ExplicitVRLittleEndian)
	}
	var out bytes.Buffer
	if err := dicom.WriteFile(&out, f.Meta, ds, bytes.NewReader(file), nil); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// store C-STOREs a Part 10 file to one destination, in the file's transfer syntax.
func (d *Deliverer) store(ctx context.Context, ae, addr string, file []byte) error {
	opt := dicom.DefaultReadOptions
	opt.StopAtPixelData = true
	f, err := dicom.Parse(bytes.NewReader(file), opt)
	if err != nil {
		return err
	}
	class, sop, ts := f.Meta.String(dicom.MediaStorageSOPClassUID), f.Meta.String(dicom.MediaStorageSOPInstanceUID), f.TransferSyntaxUID
	dialer := d.Dialer
	if dialer == nil {
		dialer = &dimse.Dialer{Logger: d.Logger}
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	a, err := dialer.Dial(sctx, addr, d.AE, ae, []dimse.PresentationContext{{AbstractSyntax: class, TransferSyntaxes: []string{ts}}})
	if err != nil {
		return err
	}
	defer a.Release(sctx)
	st, err := a.Store(sctx, class, sop, ts, bytes.NewReader(file[f.DataSetOffset:]))
	if err != nil {
		return err
	}
	if st.IsFailure() {
		return fmt.Errorf("the PACS answered 0x%04X %s", st.Code, st.ErrorComment)
	}
	return nil
}
