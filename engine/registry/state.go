package registry

import (
	"fmt"
	"path"
	"regexp"
)

// StateMount is a resource of the function's tenant, by name, that its
// containers see read-write at Path. The resource is the tenant's: every
// function of the tenant naming it shares its data; no other tenant's
// function can reach it. SizeMB is its quota (set when a host first
// creates it).
type StateMount struct {
	Name   string
	Path   string
	SizeMB int64
}

// Limits of state mounts.
const (
	MaxStateMounts    = 4
	DefaultStateMB    = 64
	MaxStateMB        = 10240
	StateMountParent  = "/mnt"
	minStateMB        = 1
	maxStateNameBytes = 64
)

var stateName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// validState checks a function's state mounts (after defaults).
func validState(ms []StateMount) error {
	if len(ms) > MaxStateMounts {
		return fmt.Errorf("%d state mounts: at most %d: %w", len(ms), MaxStateMounts, ErrInvalid)
	}
	names, paths := map[string]bool{}, map[string]bool{}
	for _, m := range ms {
		switch {
		case !stateName.MatchString(m.Name):
			return fmt.Errorf("state %q: a name is 1 to %d of a-z, 0-9, _ and -: %w", m.Name, maxStateNameBytes, ErrInvalid)
		case path.Clean(m.Path) != m.Path || path.Dir(m.Path) != StateMountParent || !stateName.MatchString(path.Base(m.Path)):
			return fmt.Errorf("state %s: path %q: want %s/<dir>: %w", m.Name, m.Path, StateMountParent, ErrInvalid)
		case m.SizeMB < minStateMB || m.SizeMB > MaxStateMB:
			return fmt.Errorf("state %s: size %d MB: want %d..%d: %w", m.Name, m.SizeMB, minStateMB, MaxStateMB, ErrInvalid)
		case names[m.Name] || paths[m.Path]:
			return fmt.Errorf("state %s: a name or path appears twice: %w", m.Name, ErrInvalid)
		}
		names[m.Name], paths[m.Path] = true, true
	}
	return nil
}
