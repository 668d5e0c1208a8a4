package registry

import "errors"

// Error classes. Errors from this package (and from the engine packages that
// share them) wrap one of these with %w; edges such as the HTTP API map them
// to status codes.
var (
	// ErrNotFound: the named thing does not exist.
	ErrNotFound = errors.New("not found")
	// ErrInvalid: the request is malformed or breaks a limit.
	ErrInvalid = errors.New("invalid")
	// ErrConflict: the request contradicts existing state (e.g. deleting a
	// function that a binding still references).
	ErrConflict = errors.New("conflict")
	// ErrUnavailable: a dependency (Redis, an agent) cannot be reached now;
	// retrying later may succeed.
	ErrUnavailable = errors.New("unavailable")
	// ErrResourceExhausted: a quota or capacity limit was hit.
	ErrResourceExhausted = errors.New("resource exhausted")
)

// IsNotFound reports whether err wraps ErrNotFound.
func IsNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

// IsInvalid reports whether err wraps ErrInvalid.
func IsInvalid(err error) bool { return errors.Is(err, ErrInvalid) }

// IsConflict reports whether err wraps ErrConflict.
func IsConflict(err error) bool { return errors.Is(err, ErrConflict) }

// IsUnavailable reports whether err wraps ErrUnavailable.
func IsUnavailable(err error) bool { return errors.Is(err, ErrUnavailable) }

// IsResourceExhausted reports whether err wraps ErrResourceExhausted.
func IsResourceExhausted(err error) bool { return errors.Is(err, ErrResourceExhausted) }
