package gliner

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Error is a failed call: the gRPC status with the service's error details decoded.
//
//	var gerr *gliner.Error
//	if errors.As(err, &gerr) && gerr.Code == codes.InvalidArgument {
//		fmt.Println(gerr.Reason, gerr.Field) // "INVALID_REQUEST" "threshold"
//	}
//
// errors.Is(err, context.DeadlineExceeded) and errors.Is(err, context.Canceled) hold for the
// DEADLINE_EXCEEDED and CANCELLED codes, and status.FromError(err) gives the status back.
type Error struct {
	// Code is the gRPC status code.
	Code codes.Code
	// Message is the status message.
	Message string
	// Reason is google.rpc.ErrorInfo's reason: the REST error code (INVALID_REQUEST, NOT_FOUND,
	// UNAUTHORIZED, RATE_LIMITED, ...); empty when the status has no ErrorInfo.
	Reason string
	// Domain and Metadata are the rest of the ErrorInfo.
	Domain   string
	Metadata map[string]string
	// Field is the first google.rpc.BadRequest field violation's field (the request field at fault,
	// e.g. "schema" or "threshold"), and FieldDescription its description; empty without BadRequest.
	Field            string
	FieldDescription string
	// RetryAfter is google.rpc.RetryInfo's retry_delay (0 without RetryInfo): wait this long before
	// calling again (RESOURCE_EXHAUSTED, UNAVAILABLE).
	RetryAfter time.Duration
	// Details are all the decoded details (errdetails messages, or an error for one that did not decode).
	Details []any

	status *status.Status
}

// FromError decodes err's gRPC status (status.FromError) and its details (st.Details()). It returns
// nil for nil, and for an error that carries no gRPC status. An *Error is returned as it is.
func FromError(err error) *Error {
	if err == nil {
		return nil
	}
	var already *Error
	if errors.As(err, &already) {
		return already
	}
	st, ok := status.FromError(err)
	if !ok {
		return nil
	}
	e := &Error{Code: st.Code(), Message: st.Message(), status: st, Details: st.Details()}
	for _, detail := range e.Details {
		switch d := detail.(type) {
		case *errdetails.ErrorInfo:
			e.Reason, e.Domain, e.Metadata = d.GetReason(), d.GetDomain(), d.GetMetadata()
		case *errdetails.BadRequest:
			if v := d.GetFieldViolations(); len(v) > 0 && e.Field == "" {
				e.Field, e.FieldDescription = v[0].GetField(), v[0].GetDescription()
			}
		case *errdetails.RetryInfo:
			if delay := d.GetRetryDelay(); delay != nil {
				e.RetryAfter = time.Duration(delay.GetSeconds())*time.Second + time.Duration(delay.GetNanos())
			}
		}
	}
	return e
}

func (e *Error) Error() string {
	s := fmt.Sprintf("gliner: %s: %s", CodeName(e.Code), e.Message)
	if e.Reason != "" {
		s += " [" + e.Reason
		if e.Field != "" {
			s += ", field " + e.Field
		}
		s += "]"
	}
	return s
}

// GRPCStatus is the status the error was built from (status.FromError uses it).
func (e *Error) GRPCStatus() *status.Status {
	if e.status == nil {
		return status.New(e.Code, e.Message)
	}
	return e.status
}

// Is makes errors.Is(err, context.DeadlineExceeded) and errors.Is(err, context.Canceled) work.
func (e *Error) Is(target error) bool {
	switch target {
	case context.DeadlineExceeded:
		return e.Code == codes.DeadlineExceeded
	case context.Canceled:
		return e.Code == codes.Canceled
	}
	return false
}

// CodeName is the canonical name of a gRPC code, as other languages print it ("INVALID_ARGUMENT";
// codes.Code's String method gives "InvalidArgument").
func CodeName(c codes.Code) string {
	if name, ok := codeNames[c]; ok {
		return name
	}
	return fmt.Sprintf("CODE(%d)", uint32(c))
}

var codeNames = map[codes.Code]string{
	codes.OK: "OK", codes.Canceled: "CANCELLED", codes.Unknown: "UNKNOWN",
	codes.InvalidArgument: "INVALID_ARGUMENT", codes.DeadlineExceeded: "DEADLINE_EXCEEDED",
	codes.NotFound: "NOT_FOUND", codes.AlreadyExists: "ALREADY_EXISTS",
	codes.PermissionDenied: "PERMISSION_DENIED", codes.ResourceExhausted: "RESOURCE_EXHAUSTED",
	codes.FailedPrecondition: "FAILED_PRECONDITION", codes.Aborted: "ABORTED",
	codes.OutOfRange: "OUT_OF_RANGE", codes.Unimplemented: "UNIMPLEMENTED", codes.Internal: "INTERNAL",
	codes.Unavailable: "UNAVAILABLE", codes.DataLoss: "DATA_LOSS", codes.Unauthenticated: "UNAUTHENTICATED",
}
