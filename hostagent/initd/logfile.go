package initd

import (
	"fmt"
	"os"
	"sync"
)

// RotatingFile is an io.Writer to a file that is rotated once it passes a
// size: path, path.1, ... path.N, the oldest dropped. It bounds what the
// functions of an instance can put on the host's disk to (Backups+1)*Max
// bytes. Write errors are returned but never block.
type RotatingFile struct {
	path    string
	max     int64
	backups int

	mu   sync.Mutex
	f    *os.File
	size int64
}

// OpenRotating opens (appending to) path, rotating at max bytes and keeping
// backups older files.
func OpenRotating(path string, max int64, backups int) (*RotatingFile, error) {
	if max <= 0 || backups < 0 {
		return nil, fmt.Errorf("initd: rotating log %s: max %d must be positive, backups %d not negative", path, max, backups)
	}
	r := &RotatingFile{path: path, max: max, backups: backups}
	if err := r.open(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *RotatingFile) open() error {
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("initd: open log %s: %w", r.path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	r.f, r.size = f, st.Size()
	return nil
}

// Write appends p, rotating first if p would pass the size limit.
func (r *RotatingFile) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return 0, os.ErrClosed
	}
	if r.size > 0 && r.size+int64(len(p)) > r.max {
		if err := r.rotate(); err != nil {
			return 0, err
		}
	}
	n, err := r.f.Write(p)
	r.size += int64(n)
	return n, err
}

// rotate shifts path.i to path.i+1 (dropping the last), path to path.1,
// and starts an empty path.
func (r *RotatingFile) rotate() error {
	r.f.Close()
	r.f = nil
	if r.backups == 0 {
		_ = os.Remove(r.path)
	}
	for i := r.backups; i >= 1; i-- {
		from := r.path
		if i > 1 {
			from = fmt.Sprintf("%s.%d", r.path, i-1)
		}
		_ = os.Rename(from, fmt.Sprintf("%s.%d", r.path, i))
	}
	return r.open()
}

// Close closes the file.
func (r *RotatingFile) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}
