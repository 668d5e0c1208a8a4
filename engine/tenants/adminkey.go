package tenants

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// LoadOrCreateAdminKey returns the administrator key kept at path, creating
// the file (mode 0600, its directory 0700 if missing) with a new key when it
// does not exist. An existing file that is readable by group or others is
// refused: the key would not be secret.
func LoadOrCreateAdminKey(path string) (key string, created bool, err error) {
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		st, err := os.Stat(path)
		if err != nil {
			return "", false, err
		}
		if st.Mode().Perm()&0o077 != 0 {
			return "", false, fmt.Errorf("admin key file %s has mode %v: want 0600", path, st.Mode().Perm())
		}
		key = strings.TrimSpace(string(b))
		if err := checkKeyText(key); err != nil {
			return "", false, fmt.Errorf("admin key file %s: %w", path, err)
		}
		return key, false, nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", false, err
	}
	key = NewKey()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) { // another process won the race: use its key
		return LoadOrCreateAdminKey(path)
	}
	if err != nil {
		return "", false, err
	}
	if _, err := f.WriteString(key + "\n"); err != nil {
		f.Close()
		return "", false, err
	}
	return key, true, f.Close()
}
