package scheduler

import "errors"

var (
	// ErrResourceExhausted: too many invocations are waiting for an instance.
	ErrResourceExhausted = errors.New("scheduler: resource exhausted")
	// ErrNoCapacity: no instance became free before the invocation's deadline.
	ErrNoCapacity = errors.New("scheduler: no instance free before the deadline")
	// ErrUnavailable: the agent could not be reached or lost the instance.
	ErrUnavailable = errors.New("scheduler: agent unavailable")
)
