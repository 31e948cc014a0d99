package fhir

import (
	"encoding/xml"
	"io"
	"strings"
)

// Narrative (Composition.section.text.div) is limited XHTML (FHIR R4 §2.4). renkei writes a field as escaped
// text with <br/> for line breaks; a section that carries several fields writes each as a <p> whose class names
// the field ("renkei-diagnosis"), so that a letter renkei wrote reads back field for field, and a letter an EMR
// wrote reads back as the section's plain text.

const xhtmlNS = "http://www.w3.org/1999/xhtml"

// field is one Letter field in a section's narrative.
type field struct {
	class string // "" when the section has one field
	text  string
}

// divOf writes fields as a narrative div, or "" when they are all empty.
func divOf(fields ...field) string {
	var b strings.Builder
	for _, f := range fields {
		if f.text == "" {
			continue
		}
		if f.class != "" {
			b.WriteString(`<p class="` + f.class + `">`)
		}
		for i, line := range strings.Split(f.text, "\n") {
			if i > 0 {
				b.WriteString("<br/>")
			}
			_ = xml.EscapeText(&b, []byte(line)) // writing to a strings.Builder does not fail
		}
		if f.class != "" {
			b.WriteString("</p>")
		}
	}
	if b.Len() == 0 {
		return ""
	}
	return `<div xmlns="` + xhtmlNS + `">` + b.String() + `</div>`
}

// blockElements end a line when read as plain text.
var blockElements = map[string]bool{"p": true, "div": true, "li": true, "tr": true, "h1": true, "h2": true, "h3": true, "h4": true, "h5": true, "h6": true, "pre": true, "table": true, "ul": true, "ol": true}

// textOfDiv reads a narrative div as plain text (line breaks for <br/> and between blocks) and the text of each
// paragraph whose class starts with "renkei-".
func textOfDiv(div string) (plain string, classed map[string]string, err error) {
	dec := xml.NewDecoder(strings.NewReader(div))
	dec.Strict = false
	dec.AutoClose = xml.HTMLAutoClose
	dec.Entity = xml.HTMLEntity
	var (
		out     strings.Builder
		cur     *strings.Builder // the classed paragraph being read
		curName string
		depth   int
		pDepth  int
		newline bool // a block ended: start a new line before more text
	)
	classed = map[string]string{}
	write := func(s string) {
		if newline && out.Len() > 0 {
			out.WriteString("\n")
		}
		newline = false
		out.WriteString(s)
		if cur != nil {
			cur.WriteString(s)
		}
	}
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			switch {
			case t.Name.Local == "br":
				write("\n")
			case t.Name.Local == "p" && cur == nil:
				for _, a := range t.Attr {
					if a.Name.Local == "class" && strings.HasPrefix(a.Value, "renkei-") {
						cur, curName, pDepth = &strings.Builder{}, a.Value, depth
						newline = true
					}
				}
			}
		case xml.EndElement:
			if cur != nil && depth == pDepth && t.Name.Local == "p" {
				classed[curName] = cur.String()
				cur = nil
			}
			if blockElements[t.Name.Local] {
				newline = true
			}
			depth--
		case xml.CharData:
			s := string(t)
			if strings.TrimSpace(s) == "" && (newline || out.Len() == 0) && cur == nil {
				continue // indentation between blocks
			}
			write(s)
		}
	}
	return out.String(), classed, nil
}
