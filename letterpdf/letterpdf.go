// Package letterpdf prints a referral's letter as an A4 PDF: the 診療情報提供書 (referral letter, in the sections of
// the national HS038 document), its reply (返書), and a radiologist's reading report (画像診断報告書).
//
// Text is set in IPAex Mincho, headings in IPAex Gothic, both embedded as subsets (only the glyphs a letter uses), so
// the PDF reads the same on any machine. The fonts come from the Debian package fonts-ipaexfont; Open takes other
// paths. The PDF is built with github.com/go-pdf/fpdf.
package letterpdf

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/go-pdf/fpdf"

	"renkei"
)

// Doc is what one printed letter needs. The letter text, the patient and both institutions come from the referral
// unless a field here says otherwise; the structured facts (allergies, medications) and the sender's address are
// not in renkei.Referral and are passed here.
type Doc struct {
	// Kind is the referral's kind; empty means Referral.Kind. KindReading prints a reading request, or with Reply a
	// reading report (画像診断報告書).
	Kind renkei.ReferralKind
	// Reply prints the receiver's answer (返書, or the report of a reading request) rather than the sender's letter.
	Reply    bool
	Referral renkei.Referral
	// Letter is the text to print; nil means Referral.Letter, or *Referral.Reply when Reply is set. Pass an older
	// renkei.LetterVersion's Letter to print that version.
	Letter *renkei.Letter
	// From is the institution that writes (for a reply: the one that received the referral); To the one addressed.
	// An empty Name falls back to the referral's FromName/ToName (swapped for a reply).
	From, To renkei.Institution
	// FromAddress and FromPhone are the sender's 所在地 and 電話番号 (renkei.Institution has neither).
	FromAddress, FromPhone string
	// ToDepartment and ToDoctor name the addressee. Empty means the referral's ToDepartment and ToDoctor, or, for a
	// reply, the referring doctor (Referral.FromUserName). With no doctor the letter goes to "担当医 殿".
	ToDepartment, ToDoctor string
	// PatientName (kanji) and PatientKana (its reading); empty means they are taken from Referral.PatientName, a
	// DICOM PN whose ideographic and phonetic groups give them.
	PatientName, PatientKana string
	// BirthDate is YYYYMMDD (YYYY-MM-DD is read too); empty means Referral.PatientBirth.
	BirthDate string
	// Sex is "M", "F" or "O"; empty means Referral.PatientSex.
	Sex string
	// PatientID is the patient's ID as printed; empty means Referral.Patient.ID (the sender's local ID).
	PatientID string
	// Date is the letter's date, printed as the day in Japan in 和暦. Zero means Referral.SentAt, then CreatedAt.
	Date time.Time
	// Allergies are printed under アレルギー・不適応反応, before the letter's own text; entries entered in error are
	// left out. With none here and none in the letter the section says "記載なし" (unknown), never "なし".
	Allergies []renkei.Allergy
	// Medications are printed under 現在の処方, before the letter's own text; only current ones (Status "" or
	// "active") that were not entered in error.
	Medications []renkei.Medication
	// Version is the letter's version; from 2 on the letter says "第N版". Zero means Referral.Version for a letter.
	Version int
}

// Fonts names the TrueType files to embed. An empty field is looked for in the Debian paths of fonts-ipaexfont
// (then fonts-ipafont); when only one face is found it serves for both.
type Fonts struct {
	Mincho string // body text, e.g. /usr/share/fonts/opentype/ipaexfont-mincho/ipaexm.ttf
	Gothic string // title and headings, e.g. /usr/share/fonts/opentype/ipaexfont-gothic/ipaexg.ttf
}

// Where Debian puts the fonts: fonts-ipaexfont (bookworm and later under opentype/, older under truetype/), the older
// fonts-ipafont, and the alternatives links that whichever Japanese font package is installed maintains.
var (
	minchoPaths = []string{
		"/usr/share/fonts/opentype/ipaexfont-mincho/ipaexm.ttf",
		"/usr/share/fonts/truetype/ipaexfont-mincho/ipaexm.ttf",
		"/usr/share/fonts/opentype/ipafont-mincho/ipam.ttf",
		"/usr/share/fonts/truetype/ipafont-mincho/ipam.ttf",
		"/usr/share/fonts/truetype/fonts-japanese-mincho.ttf",
	}
	gothicPaths = []string{
		"/usr/share/fonts/opentype/ipaexfont-gothic/ipaexg.ttf",
		"/usr/share/fonts/truetype/ipaexfont-gothic/ipaexg.ttf",
		"/usr/share/fonts/opentype/ipafont-gothic/ipag.ttf",
		"/usr/share/fonts/truetype/ipafont-gothic/ipag.ttf",
		"/usr/share/fonts/truetype/fonts-japanese-gothic.ttf",
	}
)

// Renderer prints letters with the fonts it was opened with. It holds the font files in memory (about 14 MB for
// IPAex) and is safe for concurrent use.
type Renderer struct {
	mincho, gothic []byte
}

// Open reads the fonts. It fails with Kind Unavailable, naming the Debian package to install, when no Japanese
// TrueType font is found, and with Kind Invalid when a named file is not a TrueType font fpdf can embed (fpdf takes
// .ttf files with TrueType outlines: not OpenType/CFF .otf, not .ttc collections such as fonts-noto-cjk's).
func Open(fonts Fonts) (*Renderer, error) { return open(fonts, minchoPaths, gothicPaths) }

func open(fonts Fonts, minchoPaths, gothicPaths []string) (*Renderer, error) {
	const op = "letterpdf.Open"
	mincho, err := readFont(fonts.Mincho, minchoPaths)
	if err != nil {
		return nil, &renkei.Error{Op: op, Kind: renkei.ErrorKind(err), Message: "the Japanese fonts cannot be read",
			Japanese: "日本語フォントを読み込めません", Err: err}
	}
	gothic, err := readFont(fonts.Gothic, gothicPaths)
	if err != nil {
		return nil, &renkei.Error{Op: op, Kind: renkei.ErrorKind(err), Message: "the Japanese fonts cannot be read",
			Japanese: "日本語フォントを読み込めません", Err: err}
	}
	switch {
	case mincho == nil && gothic == nil:
		return nil, &renkei.Error{Op: op, Kind: renkei.Unavailable, Message: "no Japanese font is installed", Japanese: "日本語フォントがインストールされていません",
			Err: fmt.Errorf("no Japanese TrueType font in %v or %v: install the Debian package fonts-ipaexfont (apt-get install fonts-ipaexfont), or name the files in letterpdf.Fonts", minchoPaths, gothicPaths)}
	case mincho == nil:
		mincho = gothic
	case gothic == nil:
		gothic = mincho
	}
	return &Renderer{mincho: mincho, gothic: gothic}, nil
}

// readFont reads the named file, or the first of the candidates that exists; nil, nil when none does.
func readFont(named string, candidates []string) ([]byte, error) {
	paths := candidates
	if named != "" {
		paths = []string{named}
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) && named == "" {
			continue
		}
		if err != nil {
			return nil, &renkei.Error{Kind: renkei.Unavailable, Err: fmt.Errorf("read font: %w", err)}
		}
		if len(b) < 12 {
			return nil, &renkei.Error{Kind: renkei.Invalid, Err: fmt.Errorf("font %s: too short to be a TrueType font", p)}
		}
		switch tag := string(b[:4]); tag {
		case "\x00\x01\x00\x00", "true":
			return b, nil
		case "OTTO":
			return nil, &renkei.Error{Kind: renkei.Invalid, Err: fmt.Errorf("font %s: OpenType with CFF outlines; fpdf embeds only TrueType outlines (use fonts-ipaexfont's ipaexm.ttf)", p)}
		case "ttcf":
			return nil, &renkei.Error{Kind: renkei.Invalid, Err: fmt.Errorf("font %s: a font collection (.ttc); fpdf embeds only single .ttf fonts (use fonts-ipaexfont's ipaexm.ttf)", p)}
		default:
			return nil, &renkei.Error{Kind: renkei.Invalid, Err: fmt.Errorf("font %s: not a TrueType font (tag %q)", p, tag)}
		}
	}
	return nil, nil
}

// defaultRenderer reads the fonts once per process, on the first Render.
var defaultRenderer = sync.OnceValues(func() (*Renderer, error) { return Open(Fonts{}) })

// Render writes d as a PDF to w, with the fonts of the Debian paths, read once per process: the first call opens
// them and every later call reuses the result, a missing font included (install it, then restart). Errors are as
// for Open and Renderer.Render. Use Open to name other font files.
func Render(w io.Writer, d Doc) error {
	r, err := defaultRenderer()
	if err != nil {
		return err
	}
	return r.Render(w, d)
}

// Render writes d as a PDF to w. It fails with Kind Invalid when the letter has no date (Doc.Date, or the
// referral's SentAt or CreatedAt), and with Kind Internal when the PDF cannot be built or written.
//
// fpdf parses the fonts' tables for every document (its parsed font is not exported, so it cannot be shared); that
// costs a few milliseconds per face, the file bytes themselves are read once.
func (r *Renderer) Render(w io.Writer, d Doc) (err error) {
	const op = "letterpdf.Render"
	p, err := prepare(d)
	if err != nil {
		return &renkei.Error{Op: op, Kind: renkei.Invalid, Message: "the document has no date", Japanese: "文書の日付がありません", Err: err}
	}
	defer func() {
		// fpdf panics on some inputs (a rune above U+FFFF, which clean removes, is the one known); a letter must
		// not take the server down.
		if v := recover(); v != nil {
			err = &renkei.Error{Op: op, Kind: renkei.Internal, Message: "the PDF cannot be made",
				Japanese: "PDFを作成できません", Err: fmt.Errorf("fpdf: %v", v)}
		}
	}()
	pdf := fpdf.New("P", "pt", "A4", "")
	pdf.SetCompression(true)
	pdf.SetCatalogSort(true) // the same letter gives the same bytes
	pdf.SetCreationDate(p.date)
	pdf.SetModificationDate(p.date)
	pdf.SetTitle(p.title, true)
	pdf.SetCreator("renkei", true)
	pdf.SetLang("ja-JP")
	pdf.SetAutoPageBreak(false, 0)
	pdf.SetMargins(0, 0, 0)
	pdf.AddUTF8FontFromBytes(fontMincho, "", r.mincho)
	pdf.AddUTF8FontFromBytes(fontGothic, "", r.gothic)
	if err := pdf.Error(); err != nil {
		return &renkei.Error{Op: op, Kind: renkei.Internal, Message: "the PDF cannot be made",
			Japanese: "PDFを作成できません", Err: fmt.Errorf("load fonts: %w", err)}
	}
	pages := layOut(p, pdf)
	paint(pdf, pages)
	var buf bytes.Buffer
	if err := pdf.Output(&buf); err != nil {
		return &renkei.Error{Op: op, Kind: renkei.Internal, Message: "the PDF cannot be made", Japanese: "PDFを作成できません", Err: err}
	}
	if _, err := w.Write(buf.Bytes()); err != nil {
		return &renkei.Error{Op: op, Kind: renkei.Internal, Message: "the PDF cannot be written",
			Japanese: "PDFを書き出せません", Err: fmt.Errorf("write pdf: %w", err)}
	}
	return nil
}
