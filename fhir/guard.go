package fhir

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// This file checks the shape of hostile input before anything is unmarshalled: size, UTF-8, nesting depth,
// numbers, duplicate keys and nulls, with one streaming pass of json.Decoder tokens. The pass stops at the
// first structural problem, so 10⁵ nested arrays cost 65 tokens.

// frame is one open JSON object or array on the walk.
type frame struct {
	obj     bool
	key     string // object: the member being read
	idx     int    // array: the element being read
	wantKey bool   // object: the next string token is a key
	keys    map[string]struct{}
}

// walker follows a token stream and knows the FHIRPath-like location of the value it is at.
type walker struct {
	dec   *json.Decoder
	stack []frame
	root  string // the root resource's type once seen, else "$"
}

func newWalker(data []byte) *walker {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	return &walker{dec: dec, root: "$"}
}

// path is the location of the value being read.
func (w *walker) path() string {
	var b strings.Builder
	b.WriteString(w.root)
	for _, f := range w.stack {
		if f.obj {
			if f.key != "" {
				b.WriteString("." + f.key)
			}
		} else {
			b.WriteString("[" + strconv.Itoa(f.idx) + "]")
		}
	}
	return b.String()
}

// valueDone moves the innermost container past the value just read.
func (w *walker) valueDone() {
	if len(w.stack) == 0 {
		return
	}
	f := &w.stack[len(w.stack)-1]
	if f.obj {
		f.wantKey = true
	} else {
		f.idx++
	}
}

// isKey reports whether the string token about to be handled is an object key.
func (w *walker) isKey() bool {
	return len(w.stack) > 0 && w.stack[len(w.stack)-1].obj && w.stack[len(w.stack)-1].wantKey
}

// scan checks data and returns the structural errors found (at most one: the walk stops there).
func scan(data []byte) []Issue {
	fail := func(loc, en, ja string) []Issue {
		return []Issue{{Severity: Error, Location: loc, Message: en, MessageJa: ja}}
	}
	if len(data) > MaxSize {
		return fail("$", "input larger than 10 MB", "ファイルが大きすぎます（上限10MB）")
	}
	if !utf8.Valid(data) {
		return fail("$", "input is not valid UTF-8", "文字コードがUTF-8ではありません")
	}
	w := newWalker(data)
	started := false
	for {
		tok, err := w.dec.Token()
		if err == io.EOF {
			if !started {
				return fail("$", "empty input", "データが空です")
			}
			if len(w.stack) > 0 {
				return fail(w.path(), "unexpected end of JSON", "データが途中で切れています")
			}
			return nil
		}
		if err != nil {
			var se *json.SyntaxError
			en := "malformed JSON"
			if errors.As(err, &se) {
				en = "malformed JSON at byte " + strconv.FormatInt(se.Offset, 10) + ": " + se.Error()
			}
			return fail(w.path(), en, "JSONの書式に誤りがあります")
		}
		if started && len(w.stack) == 0 {
			return fail("$", "more than one JSON value", "JSONの後ろに余分なデータがあります")
		}
		if !started {
			started = true
			if d, ok := tok.(json.Delim); !ok || d != '{' {
				return fail("$", "input is not a JSON object", "FHIRリソース（JSONオブジェクト）ではありません")
			}
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				if len(w.stack) >= MaxDepth {
					return fail(w.path(), "JSON nested deeper than 64 levels", "データの入れ子が深すぎます")
				}
				f := frame{obj: t == '{', wantKey: t == '{'}
				if f.obj {
					f.keys = map[string]struct{}{}
				}
				w.stack = append(w.stack, f)
			case '}', ']':
				w.stack = w.stack[:len(w.stack)-1]
				w.valueDone()
			}
		case string:
			if w.isKey() {
				f := &w.stack[len(w.stack)-1]
				if _, dup := f.keys[t]; dup {
					f.key = t
					return fail(w.path(), "duplicate JSON key \""+t+"\"", "同じ項目（"+t+"）が2回あります")
				}
				f.keys[t] = struct{}{}
				f.key = t
				f.wantKey = false
				continue
			}
			if len(w.stack) == 1 && w.stack[0].key == "resourceType" && reID.MatchString(t) {
				w.root = t
			}
			w.valueDone()
		case json.Number:
			if en := checkNumber(string(t)); en != "" {
				return fail(w.path(), en, "数値が大きすぎるか桁数が多すぎます")
			}
			w.valueDone()
		case nil:
			if len(w.stack) > 0 && w.stack[len(w.stack)-1].obj {
				return fail(w.path(), "null is not allowed as a value in FHIR JSON", "値が null になっています")
			}
			w.valueDone()
		default: // bool
			w.valueDone()
		}
	}
}

// checkNumber returns why a JSON number literal is refused, or "".
func checkNumber(s string) string {
	digits := 0
	integer := true
	for _, c := range s {
		switch {
		case c >= '0' && c <= '9':
			digits++
		case c == '.' || c == 'e' || c == 'E':
			integer = false
		}
	}
	if digits > MaxNumberDigits {
		return "number with more than 30 digits"
	}
	if integer {
		if _, err := strconv.ParseInt(s, 10, 64); err != nil {
			return "integer out of the 64-bit range"
		}
		return ""
	}
	if _, err := strconv.ParseFloat(s, 64); err != nil {
		return "number out of the float64 range"
	}
	return ""
}

// pathAt returns the location of the value that ends at or after byte offset of data (the offset a
// json.UnmarshalTypeError reports), with root as the name of data's root.
func pathAt(data []byte, offset int64, root string) string {
	w := newWalker(data)
	w.root = root
	for {
		before := w.path()
		tok, err := w.dec.Token()
		if err != nil {
			return root
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				if w.dec.InputOffset() >= offset {
					return before
				}
				w.stack = append(w.stack, frame{obj: t == '{', wantKey: t == '{'})
			case '}', ']':
				if len(w.stack) == 0 {
					return root
				}
				w.stack = w.stack[:len(w.stack)-1]
				w.valueDone()
			}
		case string:
			if w.isKey() {
				f := &w.stack[len(w.stack)-1]
				f.key, f.wantKey = t, false
				continue
			}
			if w.dec.InputOffset() >= offset {
				return before
			}
			w.valueDone()
		default:
			if w.dec.InputOffset() >= offset {
				return before
			}
			w.valueDone()
		}
	}
}

// fieldPath is the location of the value being read with the object keys only, as json.UnmarshalTypeError.Field
// names it.
func (w *walker) fieldPath() string {
	var keys []string
	for _, f := range w.stack {
		if f.obj {
			keys = append(keys, f.key)
		}
	}
	return strings.Join(keys, ".")
}

// pathOfField returns the location of the first value of JSON kind kind ("string", "object", …) at the key path
// field (no array indices), for type errors that carry no offset.
func pathOfField(data []byte, field, kind, root string) string {
	w := newWalker(data)
	w.root = root
	for {
		tok, err := w.dec.Token()
		if err != nil {
			return root + "." + field
		}
		here := w.fieldPath() == field
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				if here && ((t == '{' && kind == "object") || (t == '[' && kind == "array")) {
					return w.path()
				}
				w.stack = append(w.stack, frame{obj: t == '{', wantKey: t == '{'})
			case '}', ']':
				if len(w.stack) == 0 {
					return root + "." + field
				}
				w.stack = w.stack[:len(w.stack)-1]
				w.valueDone()
			}
		case string:
			if w.isKey() {
				f := &w.stack[len(w.stack)-1]
				f.key, f.wantKey = t, false
				continue
			}
			if here && kind == "string" {
				return w.path()
			}
			w.valueDone()
		case bool:
			if here && kind == "bool" {
				return w.path()
			}
			w.valueDone()
		default:
			w.valueDone()
		}
	}
}

// decode unmarshals raw into v and turns a type error into an Issue located at the offending value.
func decode(raw []byte, v any, root, ja string) *Issue {
	err := json.Unmarshal(raw, v)
	if err == nil {
		return nil
	}
	is := &Issue{Severity: Error, Location: root, Message: err.Error(), MessageJa: ja + "データの形式が正しくありません"}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Offset > 0 {
			is.Location = pathAt(raw, te.Offset, root)
		} else {
			is.Location = pathOfField(raw, te.Field, te.Value, root)
		}
		is.Message = "a JSON " + te.Value + " where FHIR expects " + fhirType(te.Type.String())
		is.MessageJa = ja + "データの形式が正しくありません（" + is.Location + "）"
	}
	return is
}

// fhirType names a Go type of this package the way a FHIR reader would.
func fhirType(goType string) string {
	switch {
	case strings.HasPrefix(goType, "[]"):
		return "an array"
	case goType == "string":
		return "a string"
	case goType == "fhir.number":
		return "a number"
	case goType == "bool" || goType == "*bool":
		return "a boolean"
	}
	return "an object"
}
