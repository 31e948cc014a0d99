// Package renkei holds the domain types and the error type shared by every part of the renkei platform: a regional
// service on which hospitals, clinics and care homes share medical images and clinical information.
//
// Subpackages implement the transports (dicomweb, later dimse and web), the capabilities (archive) and the storage
// (sqlstore, blob). Only cmd/renkei wires them together.
package renkei

import (
	"errors"
	"fmt"
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
type Error struct {
	Op      string // the operation that failed, e.g. "archive.Store"
	Kind    Kind
	Message string // a sentence a user understands
	Err     error  // the underlying error, if any
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
