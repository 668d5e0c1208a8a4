package statefs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/testenv"
)

// TestNetworkedAcrossStores: two stores on one SeaweedFS filer stand for
// two hosts. Increments under a lock directory, two at a time (one on each host, each
// by another uid), add up; a write past the quota fails with ENOSPC; another
// tenant's resource of the same name is another directory; closing a store
// keeps what was written; when a host's weed dies, the next attach mounts
// again and binds the new mount where the dead one was.
func TestNetworkedAcrossStores(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatal("statefs needs root (mounts)")
	}
	fs := testenv.StartSeaweedFS(t, "127.0.0.1")
	opt := Options{Filer: fs.Filer, Weed: testenv.WeedBinary()}
	root := t.TempDir()
	// Other uids traverse to the resources, as an instance's root does.
	if err := os.Chmod(filepath.Dir(root), 0o755); err != nil {
		t.Fatal(err)
	}
	var stores [2]*Store
	var dirs [2]string
	for i := range stores {
		s, err := New(filepath.Join(root, "host"+strconv.Itoa(i), "state"), opt)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		stores[i] = s
		dirs[i] = filepath.Join(root, "host"+strconv.Itoa(i), "i1", "state")
		if err := s.Prepare(dirs[i]); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Release(filepath.Dir(filepath.Dir(dirs[i]))) })
		if err := os.Chmod(filepath.Join(root, "host"+strconv.Itoa(i)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := s.Attach("acme", "data", 16, dirs[i]); err != nil {
			t.Fatal(err)
		}
	}
	for range 20 { // two at a time, one on each host
		errs := make(chan error, 2)
		for i, d := range dirs {
			go func() { errs <- incrAs(filepath.Join(d, "data", "n"), 3_100_000+i) }()
		}
		for range dirs {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
	}
	for i, d := range dirs {
		if got, err := os.ReadFile(filepath.Join(d, "data", "n")); err != nil || value(got) != 40 {
			t.Fatalf("host %d reads %q, %v after 40 increments", i, got, err)
		}
	}
	if got, err := fs.Read("/ember/state/acme/data/n"); err != nil || value(got) != 40 {
		t.Fatalf("the filer holds %q, %v", got, err)
	}

	big := make([]byte, 32<<20)
	if err := os.WriteFile(filepath.Join(dirs[0], "data", "big"), big, 0o666); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("32 MiB into a 16 MB resource: %v, want ENOSPC", err)
	}
	_ = os.Remove(filepath.Join(dirs[0], "data", "big"))

	other := filepath.Join(root, "host1", "i2", "state")
	if err := stores[1].Prepare(other); err != nil {
		t.Fatal(err)
	}
	if err := stores[1].Attach("globex", "data", 16, other); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(other, "data", "n")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("globex sees acme's file: %v", err)
	}
	res := stores[1].Resources()
	if len(res) != 2 {
		t.Fatalf("host 1 lists %+v, want acme's and globex's data", res)
	}
	for _, r := range res {
		if r.SizeBytes != 16<<20 || r.Attached != 1 {
			t.Fatalf("resource %+v: want 16 MiB attached once", r)
		}
	}

	// Host 0 goes (its instance released, the store closed): the data stays.
	if err := stores[0].Release(dirs[0]); err != nil {
		t.Fatal(err)
	}
	if err := stores[0].Close(); err != nil {
		t.Fatal(err)
	}
	// Host 1's weed dies: the next attach mounts again.
	mnt := filepath.Join(root, "host1", "state", "acme", "data")
	stores[1].mu.Lock()
	m := stores[1].weed[mnt]
	stores[1].mu.Unlock()
	if m == nil {
		t.Fatalf("no weed mount at %s", mnt)
	}
	_ = m.cmd.Process.Kill()
	<-m.exited
	// The instance's next attach binds the new mount in place of the dead.
	if err := stores[1].Attach("acme", "data", 16, dirs[1]); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(dirs[1], "data", "n")); err != nil || value(got) != 40 {
		t.Fatalf("after host 0 closed and host 1's mount died, host 1 reads %q, %v", got, err)
	}
}

// incrAs adds one to the number in path under an exclusive lock, as a
// container would: in a child process running as uid, umask 0.
func incrAs(path string, uid int) error {
	cmd, err := newChild(uid, "incr", path)
	if err != nil {
		return err
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return errors.New(strings.TrimSpace(string(out)) + ": " + err.Error())
	}
	return nil
}

// TestMain runs the tests, or one operation of incrAs's child.
func TestMain(m *testing.M) {
	if os.Getenv("STATEFS_CHILD") == "incr" {
		syscall.Umask(0)
		if err := incr(os.Getenv("STATEFS_PATH")); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// childBinary is a copy of the test binary another uid may run.
var childBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "statefs-child-")
	if err != nil {
		return "", err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	b, err := os.ReadFile(os.Args[0])
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "child")
	return path, os.WriteFile(path, b, 0o755)
})

func newChild(uid int, op, path string) (*exec.Cmd, error) {
	bin, err := childBinary()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), "STATEFS_CHILD="+op, "STATEFS_PATH="+path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	return cmd, nil
}

// incr adds one to the number in path as examples/counter does: holding
// the lock directory path.lock.d (mkdir is exclusive at the filer), it
// opens, reads, rewrites (fixed width) and closes path, then removes the
// lock.
func incr(path string) error {
	deadline := time.Now().Add(30 * time.Second)
	for wait := 2 * time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		err := os.Mkdir(path+".lock.d", 0o777)
		if err == nil {
			break
		}
		if !errors.Is(err, os.ErrExist) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(wait) // the holder's rmdir tells nobody: poll, backing off
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		return err
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err == nil {
		_, err = f.WriteAt(fmt.Appendf(nil, "%020d", value(b)+1), 0)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if rerr := os.Remove(path + ".lock.d"); err == nil {
		err = rerr
	}
	return err
}

// value is the number a counter file holds.
func value(b []byte) int64 {
	n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n
}
