package registry

import (
	"regexp"
	"strings"
	"testing"
)

// namePattern is what validName checks, as a regular expression.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func TestValidName(t *testing.T) {
	for _, name := range []string{"", "a", "acme-01_x", strings.Repeat("a", 64), strings.Repeat("a", 65),
		"a.b", "a b", "a/b", "é", "a\n", "-", "_", "ZZ9", "a$", "ä"} {
		if got, want := validName(name), namePattern.MatchString(name); got != want {
			t.Errorf("validName(%q) = %v, want %v", name, got, want)
		}
	}
}

// FuzzValidName: validName agrees with the pattern on any input.
func FuzzValidName(f *testing.F) {
	f.Add("acme")
	f.Add(strings.Repeat("x", 64))
	f.Fuzz(func(t *testing.T, name string) {
		if got, want := validName(name), namePattern.MatchString(name); got != want {
			t.Fatalf("validName(%q) = %v, pattern says %v", name, got, want)
		}
	})
}
