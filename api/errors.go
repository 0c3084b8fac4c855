package api

import (
	"errors"
	"fmt"
	"net/http"
)

// Error classes. Code anywhere in the daemon wraps one of these with %w and
// the server maps the class to an HTTP status in one place (StatusOf); the
// client maps the status back (FromStatus), so errors.Is works end to end.
var (
	ErrInvalid        = errors.New("invalid argument")
	ErrNotFound       = errors.New("not found")
	ErrAlreadyExists  = errors.New("already exists")
	ErrConflict       = errors.New("conflict")
	ErrForbidden      = errors.New("forbidden")
	ErrUnauthorized   = errors.New("unauthorized")
	ErrTimeout        = errors.New("timed out")
	ErrUnavailable    = errors.New("unavailable")
	ErrNotImplemented = errors.New("not implemented")
	ErrGone           = errors.New("gone")
	// ErrInsufficientStorage: a write does not fit in the free space left.
	ErrInsufficientStorage = errors.New("insufficient storage")
	// ErrMethodNotAllowed: the path exists, not with this method; the
	// server names the methods it takes in an Allow header.
	ErrMethodNotAllowed = errors.New("method not allowed")
	// ErrTooLarge: a request body is larger than its route takes
	// (MaxJSONBodyBytes for a JSON body).
	ErrTooLarge = errors.New("request body too large")
	// ErrBootFailed: a guest did not come up: it printed nothing on its
	// console within the boot watchdog's bound, its machine exited before
	// the agent answered, or a restored guest's agent did not answer in
	// time. The daemon is the gateway to the guest, and the guest failed
	// it: 502.
	ErrBootFailed = errors.New("guest did not boot")
)

// MaxJSONBodyBytes is the largest JSON request body the API takes, on every
// route with a JSON body; a larger one is ErrTooLarge (413). The daemon
// decodes such a body whole, so this bounds what one request can make it
// hold. It leaves room for a secret of 3 MiB after base64 (Kubernetes caps
// a Secret at 1 MiB) or a long userdata script, and is sixteen times the
// largest tag update the tag limits allow.
const MaxJSONBodyBytes = 4 << 20

// classes is the one table between error classes and HTTP status codes.
// Order matters only for StatusOf: the first class an error matches wins.
var classes = []struct {
	err    error
	status int
}{
	{ErrInvalid, http.StatusBadRequest},
	{ErrUnauthorized, http.StatusUnauthorized},
	{ErrForbidden, http.StatusForbidden},
	{ErrNotFound, http.StatusNotFound},
	{ErrTimeout, http.StatusRequestTimeout},
	{ErrAlreadyExists, http.StatusConflict},
	{ErrConflict, http.StatusConflict},
	{ErrGone, http.StatusGone},
	{ErrNotImplemented, http.StatusNotImplemented},
	{ErrUnavailable, http.StatusServiceUnavailable},
	{ErrInsufficientStorage, http.StatusInsufficientStorage},
	{ErrMethodNotAllowed, http.StatusMethodNotAllowed},
	{ErrTooLarge, http.StatusRequestEntityTooLarge},
	{ErrBootFailed, http.StatusBadGateway},
}

// StatusOf returns the HTTP status for err: the status of the first class it
// wraps, or 500 for an error of no class.
func StatusOf(err error) int {
	for _, c := range classes {
		if errors.Is(err, c.err) {
			return c.status
		}
	}
	return http.StatusInternalServerError
}

// ErrorResponse is the JSON body of every error the API returns.
type ErrorResponse struct {
	Error string `json:"error"`
	Code  string `json:"code,omitempty"`
}

// Error is what the client returns for a non-2xx response. It keeps the
// status and the server's message and unwraps to the matching class.
type Error struct {
	Method     string
	Path       string
	StatusCode int
	Message    string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s %s: %d %s: %s", e.Method, e.Path, e.StatusCode, http.StatusText(e.StatusCode), e.Message)
}

// Unwrap returns the error class for the status code, or nil.
func (e *Error) Unwrap() error {
	if e.StatusCode == http.StatusConflict {
		return ErrConflict
	}
	for _, c := range classes {
		if c.status == e.StatusCode {
			return c.err
		}
	}
	return nil
}

// Is lets errors.Is(err, ErrAlreadyExists) match a 409 as well as ErrConflict.
func (e *Error) Is(target error) bool {
	return e.StatusCode == http.StatusConflict && target == ErrAlreadyExists
}
