// Package renkei holds the domain types and the error type shared by every part of the renkei platform: a regional
// service on which hospitals, clinics and care homes share medical images and clinical information.
//
// Subpackages implement the transports (dicomweb, later dimse and web), the capabilities (archive) and the storage
// (sqlstore, blob). Only cmd/renkei wires them together.
package renkei

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Kind classifies an error so that each transport can map it to its own status in one place.
type Kind int

// The error kinds. Keep the list short and stable: transports switch on it.
const (
	Internal     Kind = iota // a bug or an unexpected failure; details go to the log only
	Invalid                  // the request or the data is malformed
	NotFound                 // the named thing does not exist (or is not visible to the caller)
	Conflict                 // the request contradicts what is stored
	Unauthorized             // the caller is not authenticated
	Forbidden                // the caller may not do this
	Unavailable              // a dependency is down or overloaded; retry later
	TooLarge                 // the request exceeds a configured limit
)

func (k Kind) String() string {
	switch k {
	case Invalid:
		return "invalid"
	case NotFound:
		return "not found"
	case Conflict:
		return "conflict"
	case Unauthorized:
		return "unauthorized"
	case Forbidden:
		return "forbidden"
	case Unavailable:
		return "unavailable"
	case TooLarge:
		return "too large"
	}
	return "internal"
}

// Error is renkei's error. Message is for the user (it may be shown in the UI or returned in a problem+json body);
// Op and Err are for operators reading logs.
//
// A message a person meets in the web app carries its Japanese beside its English: the code that raises the error
// writes both (see Errorj), so that each sentence is translated where its meaning is known and the two never drift
// apart in a distant catalogue. Transports choose one with ErrorMessageIn for the request's language; English stays
// the language of the logs (Error()) and of API clients that do not ask for Japanese. A message with no Japanese is
// shown in English to everyone (DIMSE and DICOMweb-only errors, which no clerk reads).
//
// Code, when set, names the refusal for programs (the web app, integrations): a short stable string such as
// "consent-required" that does not change when the wording or the language does.
type Error struct {
	Op       string // the operation that failed, e.g. "archive.Store"
	Kind     Kind
	Message  string // a sentence a user understands, in English
	Japanese string // the same sentence in Japanese, if it has been written
	Code     string // a stable machine-readable name for the refusal, if programs need to recognise it
	Err      error  // the underlying error, if any
}

func (e *Error) Error() string {
	s := e.Op
	if e.Message != "" {
		if s != "" {
			s += ": "
		}
		s += e.Message
	}
	if e.Err != nil {
		if s != "" {
			s += ": "
		}
		s += e.Err.Error()
	}
	if s == "" {
		s = e.Kind.String()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error of the given kind with a formatted user message.
func Errorf(op string, kind Kind, format string, args ...any) *Error {
	return &Error{Op: op, Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// Errorj returns an *Error of the given kind with its user message in Japanese (ja) and English (en), both
// formatted with the same args. Refer to args by index (%[2]s) where Japanese word order differs from English.
func Errorj(op string, kind Kind, ja, en string, args ...any) *Error {
	return &Error{Op: op, Kind: kind, Message: fmt.Sprintf(en, args...), Japanese: fmt.Sprintf(ja, args...)}
}

// WithCode sets e's Code and returns e, for use at the point of raising: renkei.Errorj(…).WithCode("consent-required").
func (e *Error) WithCode(code string) *Error {
	e.Code = code
	return e
}

// ErrorKind returns the Kind of the first *Error in err's chain, or Internal.
func ErrorKind(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return Internal
}

// ErrorMessage returns the user message of the first *Error in err's chain that has one, or a generic sentence.
func ErrorMessage(err error) string {
	for err != nil {
		var e *Error
		if !errors.As(err, &e) {
			break
		}
		if e.Message != "" {
			return e.Message
		}
		err = e.Err
	}
	return "an internal error occurred"
}

// ErrorMessageIn is ErrorMessage in the language lang ("ja" or "en"): the Japanese of the first *Error in err's chain
// that has a message, when lang is "ja" and it has one; else its English.
func ErrorMessageIn(err error, lang string) string {
	for err != nil {
		var e *Error
		if !errors.As(err, &e) {
			break
		}
		if e.Message != "" || e.Japanese != "" {
			if lang == "ja" && e.Japanese != "" {
				return e.Japanese
			}
			if e.Message != "" {
				return e.Message
			}
			return e.Japanese
		}
		err = e.Err
	}
	if lang == "ja" {
		return "システム内部でエラーが発生しました。時間をおいてもう一度お試しください。解決しない場合はシステム管理者にご連絡ください。"
	}
	return "an internal error occurred"
}

// AcceptLanguage picks the language of user messages, "ja" or "en", from an Accept-Language header (RFC 9110
// 12.5.4): the one of the two with the higher quality (the first on a tie), and "en" when the header names neither.
func AcceptLanguage(header string) string {
	best, bestQ := "en", 0.0
	for _, part := range strings.Split(header, ",") {
		tag, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		primary, _, _ := strings.Cut(strings.ToLower(strings.TrimSpace(tag)), "-")
		if primary != "ja" && primary != "en" {
			continue
		}
		q := 1.0
		if v, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				q = f
			}
		}
		if q > bestQ {
			best, bestQ = primary, q
		}
	}
	return best
}

// ErrorCode returns the Code of the first *Error in err's chain that has one, or "".
func ErrorCode(err error) string {
	for err != nil {
		var e *Error
		if !errors.As(err, &e) {
			return ""
		}
		if e.Code != "" {
			return e.Code
		}
		err = e.Err
	}
	return ""
}
