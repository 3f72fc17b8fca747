package client

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Error is how a call failed: which call, about which process, and the
// gateway's gRPC status (status.FromError and Code read it).
type Error struct {
	// "start", "stop", "kill", "status", "wait", "list" or "output".
	Op string
	// The id as the caller gave it (for start, the executable); empty for
	// list.
	ID string
	// gRPC's error, holding the status.
	Err error
}

// Error reads "pm: stop 1f0c...: NotFound: <the gateway's message>".
func (e *Error) Error() string {
	s := status.Convert(e.Err)
	what := e.Op
	if e.ID != "" {
		what += " " + e.ID
	}
	return fmt.Sprintf("pm: %s: %s: %s", what, s.Code(), s.Message())
}

// Unwrap is gRPC's error.
func (e *Error) Unwrap() error { return e.Err }

// GRPCStatus is the gateway's status, so that status.FromError(err) and
// status.Code(err) work on an *Error as on gRPC's own errors.
func (e *Error) GRPCStatus() *status.Status { return status.Convert(e.Err) }

// Code is the gRPC code of err, looking through wrapping (fmt.Errorf's %w),
// which status.Code of gRPC 1.33 does not: codes.OK for nil, codes.Unknown
// for an error without a status.
func Code(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	var withStatus interface{ GRPCStatus() *status.Status }
	if errors.As(err, &withStatus) {
		return withStatus.GRPCStatus().Code()
	}
	return codes.Unknown
}

// wrap is nil for a nil err, else an *Error for the call.
func wrap(op, id string, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Op: op, ID: id, Err: err}
}
