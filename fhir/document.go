package fhir

import (
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"renkei"
)

// docKinds maps renkei's document kinds to the LOINC codes JP-CLINS uses for them.
var docKinds = map[string]string{
	renkei.DocDischargeSummary: "18842-5",
	renkei.DocReferralLetter:   "57133-1",
	renkei.DocReadingReport:    "18748-4",
}

var docKindNames = map[string]string{
	renkei.DocDischargeSummary: "退院時サマリー",
	renkei.DocReferralLetter:   "診療情報提供書",
	renkei.DocReadingReport:    "読影レポート",
}

// document checks a DocumentReference and maps it, with its inline attachment decoded.
func (d *doc) document(e *entry) (Document, bool) {
	c := d.checker(e)
	r := &documentReference{}
	if is := decode(e.raw, r, e.loc, e.label+": "); is != nil {
		d.issues = append(d.issues, *is)
		return Document{}, false
	}
	e.value = r
	c.header(&r.header)
	status := requiredCode(c, "status", r.Status, []string{"current", "superseded", "entered-in-error"}, "状態(status)")
	if status == "superseded" {
		c.warn("status", "superseded: a newer version of this document exists; imported anyway", "この文書には新しい版があります（古い版を取り込みます）")
	}
	c.codeIn("docStatus", r.DocStatus, []string{"preliminary", "final", "amended", "entered-in-error"}, "文書の状態(docStatus)")
	key := renkei.PatientKey{}
	if r.Subject != nil {
		key = d.subject(c, "subject", r.Subject)
	}
	c.instant("date", r.Date)
	out := Document{}
	out.Kind = renkei.DocOther
	if r.Type != nil {
		for _, cd := range r.Type.Coding {
			for kind, loinc := range docKinds {
				if cd.System == SystemLOINC && cd.Code == loinc {
					out.Kind = kind
				}
			}
		}
	}
	if len(r.Content) == 0 {
		c.err("content", "content is required", "文書の中身(content)がありません")
	}
	if len(r.Content) > 1 {
		c.warn("content[1]", "more than one content: only the first is imported", "文書の形式が複数あるため最初の形式だけを取り込みます")
	}
	if len(r.Content) > 0 {
		out.ContentType, out.Title, out.Date, out.Data = d.attachment(c, "content[0].attachment", r.Content[0].Attachment)
		out.Size = int64(len(out.Data))
	}
	if out.Title == "" {
		out.Title = r.Description
	}
	name, code := d.source(c, e, &r.header, r.Custodian)
	e.code = code
	if c.skipWithheld() {
		return Document{}, false
	}
	author := ""
	for _, a := range r.Author {
		if a.Type == "Organization" {
			continue
		}
		if oe := d.resolve(a.Reference); oe != nil && oe.typ == "Organization" {
			continue
		}
		if author = d.who(c, &r.header, &a); author != "" {
			break
		}
	}
	out.Fact = fact(e, author, r.Date, key, name)
	out.EnteredInError = status == "entered-in-error"
	return out, true
}

// attachment checks an Attachment and decodes its inline data.
func (d *doc) attachment(c *checker, path string, a *attachment) (contentType, title, date string, data []byte) {
	if a == nil {
		c.err(path, "attachment is required", "添付ファイル(attachment)がありません")
		return
	}
	c.dateTime(path+".creation", a.Creation)
	if a.Data == "" {
		if a.URL != "" {
			c.err(path+".data", "attachment has only a url ("+a.URL+"): renkei needs the data inline (attachment.data, base64)", "文書の本体がありません（URLだけでは取り込めません。データを埋め込んでください）")
		} else {
			c.err(path+".data", "attachment has no data", "文書の本体(attachment.data)がありません")
		}
		return
	}
	if a.ContentType == "" {
		c.err(path+".contentType", "contentType is required with data (att-1)", "文書の形式(contentType)がありません")
	}
	if base64.StdEncoding.DecodedLen(len(a.Data)) > MaxAttachmentSize+3 {
		c.err(path+".data", "attachment larger than "+strconv.Itoa(MaxAttachmentSize>>20)+" MB", "添付ファイルが大きすぎます（上限"+strconv.Itoa(MaxAttachmentSize>>20)+"MB）")
		return
	}
	b, err := base64.StdEncoding.DecodeString(a.Data)
	if err != nil {
		c.err(path+".data", "data is not base64: "+err.Error(), "文書の本体の形式（base64）が正しくありません")
		return
	}
	if len(b) > MaxAttachmentSize {
		c.err(path+".data", "attachment larger than "+strconv.Itoa(MaxAttachmentSize>>20)+" MB", "添付ファイルが大きすぎます（上限"+strconv.Itoa(MaxAttachmentSize>>20)+"MB）")
		return
	}
	if a.Size != "" && string(a.Size) != strconv.Itoa(len(b)) {
		c.err(path+".size", "size "+string(a.Size)+" but the data has "+strconv.Itoa(len(b))+" bytes", "文書のサイズが本体と一致しません（途中で欠けている可能性があります）")
	}
	if a.Hash != "" {
		sum := sha1.Sum(b)
		if a.Hash != base64.StdEncoding.EncodeToString(sum[:]) {
			c.err(path+".hash", "hash does not match the data (SHA-1)", "文書のハッシュ値が本体と一致しません（途中で壊れている可能性があります）")
		}
	}
	return a.ContentType, a.Title, a.Creation, b
}

// documentResource writes a Document as a JP Core DocumentReference. Its attachment points at the blob by a
// relative url, "Binary/<BlobKey>"; see RecordBundle.
func documentResource(doc renkei.Document, id string, subject, custodian *reference, ext []extension) (*documentReference, error) {
	if doc.ContentType == "" {
		return nil, fmt.Errorf("document %q has no content type", doc.Title)
	}
	r := &documentReference{
		header:    header{ResourceType: "DocumentReference", ID: id, Meta: &meta{Profile: []string{ProfileDocumentReference}}, Extension: ext},
		Status:    "current",
		Subject:   subject,
		Date:      instantOut(doc.RecordedAt),
		Custodian: custodian,
	}
	if doc.EnteredInError {
		r.Status = "entered-in-error"
	}
	switch loinc, ok := docKinds[doc.Kind]; {
	case ok:
		r.Type = &codeableConcept{Coding: []coding{{System: SystemLOINC, Code: loinc, Display: docKindNames[doc.Kind]}}}
	case doc.Kind == renkei.DocOther || doc.Kind == "":
	default:
		return nil, fmt.Errorf("document %q: unknown kind %q", doc.Title, doc.Kind)
	}
	if doc.Author != "" {
		r.Author = []reference{{Type: "Practitioner", Display: doc.Author}}
	}
	if custodian != nil {
		r.Author = append(r.Author, *custodian)
	}
	if doc.Date != "" && (!reDateTime.MatchString(doc.Date) || !validCalendar(doc.Date)) {
		return nil, fmt.Errorf("document %q: date %q is not a FHIR dateTime", doc.Title, doc.Date)
	}
	at := &attachment{ContentType: doc.ContentType, Title: doc.Title, Creation: doc.Date}
	if doc.BlobKey != "" {
		at.URL = "Binary/" + doc.BlobKey
	}
	if doc.Size > 0 {
		at.Size = jsonInt(doc.Size)
	}
	r.Content = []docContent{{Attachment: at}}
	return r, nil
}

func jsonInt(n int64) number { return number(strconv.FormatInt(n, 10)) }

// blobKeyOf returns the blob key of a url RecordBundle wrote ("Binary/<BlobKey>").
func blobKeyOf(url string) (string, bool) {
	return strings.CutPrefix(url, "Binary/")
}
