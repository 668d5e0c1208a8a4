package hostagent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/ember-run/ember/hostagent/cgroup"
)

// With Config.CRIU, a parked invocation that still waits after
// Config.CheckpointAfter is checkpointed: its function's process tree is
// dumped by CRIU and killed, so the instance gets its memory back, and the
// resume restores it into the namespaces its container's shim kept (the
// shim, PID 1 of the container's pid namespace, holds them all; see
// docs/spikes/criu for why only the process and not the container).
// The restored process is the agent's child: the agent waits for it and
// kills the shim when it ends, which is how ember-init learns of that end.

// checkpointed is a parked invocation's process on disk.
type checkpointed struct {
	dir    string
	shim   int    // host pid
	shimFD int    // a pidfd of the shim: signals never reach a reused pid
	pidns  uint64 // the container's pid namespace (inode)
	pipe   string // the container's output pipe, "pipe:[inode]"
	// sizeMB is the size of the images.
	sizeMB int64
}

// containerPids finds a container's shim and bootstrap (host pids) from
// its cgroup: the shim is PID 1 of the container's pid namespace; the
// bootstrap has pid bootNS there when known (a restored one), else it is
// the shim's child that leads its own session with the lowest pid (the
// function's own children start later; one that calls setsid is not it).
func containerPids(cg CgroupChild, knownNS int) (shim, boot, bootNS int, err error) {
	procs, err := os.ReadFile(filepath.Join(cg.Path(cgroup.Unified), "cgroup.procs"))
	if err != nil {
		return 0, 0, 0, err
	}
	type proc struct{ pid, ppid, nspid, nssid int }
	var ps []proc
	for _, f := range strings.Fields(string(procs)) {
		pid, _ := strconv.Atoi(f)
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		p := proc{pid: pid}
		sc := bufio.NewScanner(bytes.NewReader(st))
		for sc.Scan() {
			k, v, _ := strings.Cut(sc.Text(), ":")
			switch f := strings.Fields(v); {
			case k == "PPid" && len(f) > 0:
				p.ppid, _ = strconv.Atoi(f[0])
			case k == "NSpid" && len(f) > 0:
				p.nspid, _ = strconv.Atoi(f[len(f)-1])
			case k == "NSsid" && len(f) > 0:
				p.nssid, _ = strconv.Atoi(f[len(f)-1])
			}
		}
		ps = append(ps, p)
	}
	for _, p := range ps {
		if p.nspid == 1 {
			shim = p.pid
		}
	}
	var best *proc
	for i, p := range ps {
		switch {
		case shim == 0 || p.nspid == 1:
		case knownNS != 0:
			if p.nspid == knownNS {
				return shim, p.pid, p.nspid, nil
			}
		case p.ppid == shim && p.nssid == p.nspid && (best == nil || p.nspid < best.nspid):
			best = &ps[i]
		}
	}
	if best != nil {
		return shim, best.pid, best.nspid, nil
	}
	return 0, 0, 0, fmt.Errorf("no shim and bootstrap among %d processes of the container", len(ps))
}

// dump checkpoints container c's function process into dir and kills it.
// The images belong to owner, the instance's mapped root: the restore
// reads them from inside the instance's user namespace.
func (a *Agent) dump(ctx context.Context, c *container, dir string, owner int) (*checkpointed, error) {
	shim, boot, bootNS, err := containerPids(c.cg, int(c.bootNS.Load()))
	if err != nil {
		return nil, err
	}
	shimFD, err := unix.PidfdOpen(shim, 0)
	if err != nil {
		return nil, fmt.Errorf("hold the shim: %w", err)
	}
	keep := false
	defer func() {
		if !keep {
			_ = unix.Close(shimFD)
		}
	}()
	pipe, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/1", boot))
	if err != nil {
		return nil, err
	}
	ino := func(ns string) (uint64, error) {
		var st unix.Stat_t
		err := unix.Stat(fmt.Sprintf("/proc/%d/ns/%s", boot, ns), &st)
		return st.Ino, err
	}
	pidns, err := ino("pid")
	if err != nil {
		return nil, err
	}
	netns, err := ino("net")
	if err != nil {
		return nil, err
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	defer func() {
		if !keep {
			_ = os.RemoveAll(dir) // partial images: the tenant's memory
		}
	}()
	// Searchable by the instance's mapped root, which reads the images.
	if err := os.MkdirAll(filepath.Dir(dir), 0o711); err != nil {
		return nil, err
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, err
	}
	// The shim must not take the kill for the function's end, nor the
	// agent if the process is one it restored.
	c.dumped.Store(int64(boot))
	if err := unix.PidfdSendSignal(shimFD, unix.SIGUSR1, nil, 0); err != nil {
		return nil, fmt.Errorf("signal the shim: %w", err)
	}
	cmd := exec.CommandContext(ctx, a.cfg.CRIU, "dump", "-t", strconv.Itoa(boot), "-D", dir, "-o", "dump.log", "-v1",
		"--external", fmt.Sprintf("pid[%d]:pidns", pidns), "--external", fmt.Sprintf("net[%d]:netns", netns),
		"--external", "mnt[]:m", "--tcp-established", "--manage-cgroups=ignore", "--network-lock", "nftables")
	if out, err := cmd.CombinedOutput(); err != nil {
		// The process may have died in the dump all the same: the shim
		// reports a kill it took for the checkpoint on SIGUSR2.
		_ = unix.PidfdSendSignal(shimFD, unix.SIGUSR2, nil, 0)
		c.dumped.Store(0)
		return nil, fmt.Errorf("criu dump: %v: %s%s", err, out, logErrors(filepath.Join(dir, "dump.log")))
	}
	// From here the process is gone: a failure loses it, and the shim ends
	// so that ember-init learns of it.
	lost := func(err error) (*checkpointed, error) {
		_ = unix.PidfdSendSignal(shimFD, unix.SIGKILL, nil, 0)
		return nil, fmt.Errorf("%w: %w", errProcessLost, err)
	}
	c.bootNS.Store(int64(bootNS))
	if err := rebaseNamespaces(dir, bootNS); err != nil {
		return lost(err)
	}
	var size int64
	if err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if fi, err := d.Info(); err == nil && !d.IsDir() {
			size += fi.Size()
		}
		return os.Lchown(p, owner, owner)
	}); err != nil {
		return lost(fmt.Errorf("hand the images to the instance: %w", err))
	}
	keep = true
	return &checkpointed{dir: dir, shim: shim, shimFD: shimFD, pidns: pidns, pipe: pipe, sizeMB: (size + 1<<20 - 1) >> 20}, nil
}

// errProcessLost: a checkpoint killed the process and then failed.
var errProcessLost = errors.New("the checkpointed process is lost")

// release closes what cp holds.
func (cp *checkpointed) release() { _ = unix.Close(cp.shimFD) }

// shimAlive checks that cp's shim still runs and is the same process
// (its pid could have been reused since).
func (cp *checkpointed) shimAlive() error {
	if err := unix.PidfdSendSignal(cp.shimFD, 0, nil, 0); err != nil {
		return fmt.Errorf("the container's shim is gone: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/%d/ns/pid", cp.shim), &st); err != nil || st.Ino != cp.pidns {
		return errors.New("the container's shim is gone")
	}
	return nil
}

// restore brings a checkpointed process back into its container c, under
// a keeper (keeper.go), and lifts CRIU's network lock. It returns the
// restored process's host pid and a function that waits for its end.
func (a *Agent) restore(ctx context.Context, c *container, cp *checkpointed) (int, func() (int, error), error) {
	if err := cp.shimAlive(); err != nil { // ember-init ended the invocation meanwhile
		return 0, nil, err
	}
	pidns, err := os.Open(fmt.Sprintf("/proc/%d/ns/pid", cp.shim))
	if err != nil {
		return 0, nil, err
	}
	defer pidns.Close()
	out, err := os.OpenFile(fmt.Sprintf("/proc/%d/fd/1", cp.shim), os.O_WRONLY, 0)
	if err != nil {
		return 0, nil, err
	}
	defer out.Close()
	// The restored memory is charged to the cgroups of the process that
	// restores it: CRIU runs in the container's.
	var join []string
	for _, ctrl := range append([]string{cgroup.Unified}, cgroup.Controllers...) {
		if p := c.cg.Path(ctrl); p != "" {
			join = append(join, filepath.Join(p, "cgroup.procs"))
		}
	}
	pidFile := filepath.Join(cp.dir, "restored.pid")
	ns := func(n string) string { return fmt.Sprintf("%s:/proc/%d/ns/%s", n, cp.shim, n) }
	command := []string{"/bin/sh", "-c", `for f in $CGROUPS; do echo $$ > "$f" || exit 1; done; exec "$@"`, "sh",
		a.cfg.CRIU, "restore", "-D", cp.dir, "-o", "restore.log", "-v1", "--restore-detached", "--tcp-established",
		"--manage-cgroups=ignore", "--pidfile", pidFile,
		"--inherit-fd", "fd[3]:pidns", "--inherit-fd", "fd[4]:" + cp.pipe,
		"--join-ns", ns("net"), "--join-ns", ns("ipc"), "--join-ns", ns("uts"), "--join-ns", ns("mnt"),
		"--join-ns", ns("time"), "--join-ns", ns("user")}
	env := append(os.Environ(), "CGROUPS="+strings.Join(join, " "), "EMBER_RESTORED_PID_FILE="+pidFile)
	pid, wait, err := startKeeper(command, env, []*os.File{pidns, out})
	if err != nil {
		return 0, nil, fmt.Errorf("criu %w%s", err, logErrors(filepath.Join(cp.dir, "restore.log")))
	}
	// CRIU leaves its lock (an nftables table dropping everything but its
	// own packets) in a network namespace it joined.
	netns := fmt.Sprintf("--net=/proc/%d/ns/net", cp.shim)
	tables, err := exec.CommandContext(ctx, "nsenter", netns, "nft", "list", "tables").Output()
	if err != nil {
		return pid, wait, fmt.Errorf("list the network lock: %w", err)
	}
	for line := range strings.SplitSeq(string(tables), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && strings.HasPrefix(f[2], "CRIU-") {
			if b, err := exec.CommandContext(ctx, "nsenter", netns, "nft", "delete", "table", f[1], f[2]).CombinedOutput(); err != nil {
				return pid, wait, fmt.Errorf("lift the network lock: %v: %s", err, b)
			}
		}
	}
	return pid, wait, nil
}

// logErrors is the Error lines of a CRIU log, for an error message.
func logErrors(path string) string {
	b, _ := os.ReadFile(path)
	var out []string
	for line := range strings.SplitSeq(string(b), "\n") {
		if strings.Contains(line, "Error") && !strings.Contains(line, "RLIMIT_NOFILE") {
			out = append(out, strings.TrimSpace(line))
		}
	}
	if len(out) == 0 {
		return ""
	}
	return " (" + strings.Join(out, "; ") + ")"
}

// CRIU image files: an optional common magic, the image's magic, then
// entries, each a little-endian uint32 size and a protobuf message.
const (
	criuCommonMagic    = 0x54564319
	criuInventoryMagic = 0x58313116
	// task_kobj_ids_entry's namespace ids joined at restore: net, ipc,
	// uts, mnt, user (pid is external; cgroup and time are CRIU's).
	idsRootIDs = 3 // inventory_entry.root_ids
)

var joinedNamespaces = []protowire.Number{6, 7, 8, 9, 10}

// rebaseNamespaces makes the checkpointed task's namespaces CRIU's own in
// dir's inventory (root_ids), so that the restore creates none and joins
// the container's (--join-ns) instead.
func rebaseNamespaces(dir string, pid int) error {
	idsFile, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("ids-%d.img", pid)))
	if err != nil {
		return err
	}
	ids, err := firstEntry(idsFile)
	if err != nil {
		return fmt.Errorf("ids-%d.img: %w", pid, err)
	}
	want := map[protowire.Number]uint64{}
	if err := eachField(ids, func(n protowire.Number, v uint64, _ []byte) {
		for _, j := range joinedNamespaces {
			if n == j {
				want[n] = v
			}
		}
	}); err != nil {
		return err
	}
	if len(want) != len(joinedNamespaces) {
		return fmt.Errorf("ids-%d.img names %d of the %d namespaces", pid, len(want), len(joinedNamespaces))
	}
	path := filepath.Join(dir, "inventory.img")
	inv, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if len(inv) < 8 || binary.LittleEndian.Uint32(inv) != criuInventoryMagic {
		return errors.New("inventory.img: not a CRIU inventory")
	}
	size := int(binary.LittleEndian.Uint32(inv[4:]))
	if 8+size > len(inv) {
		return errors.New("inventory.img: short")
	}
	var msg []byte
	found := false
	if err := eachField(inv[8:8+size], func(n protowire.Number, v uint64, raw []byte) {
		if n != idsRootIDs {
			msg = append(msg, raw...)
			return
		}
		found = true
		var root []byte
		_ = eachField(fieldBytes(raw), func(n protowire.Number, v uint64, r []byte) {
			if _, ok := want[n]; !ok {
				root = append(root, r...)
			}
		})
		for _, j := range joinedNamespaces {
			root = protowire.AppendTag(root, j, protowire.VarintType)
			root = protowire.AppendVarint(root, want[j])
		}
		msg = protowire.AppendTag(msg, idsRootIDs, protowire.BytesType)
		msg = protowire.AppendBytes(msg, root)
	}); err != nil {
		return fmt.Errorf("inventory.img: %w", err)
	}
	if !found {
		return errors.New("inventory.img has no root_ids")
	}
	out := binary.LittleEndian.AppendUint32(nil, criuInventoryMagic)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(msg)))
	out = append(out, msg...)
	out = append(out, inv[8+size:]...)
	return os.WriteFile(path, out, 0o600)
}

// firstEntry is the first message of a CRIU image with the common magic.
func firstEntry(img []byte) ([]byte, error) {
	if len(img) < 12 || binary.LittleEndian.Uint32(img) != criuCommonMagic {
		return nil, errors.New("not a CRIU image")
	}
	size := int(binary.LittleEndian.Uint32(img[8:]))
	if 12+size > len(img) {
		return nil, errors.New("short image")
	}
	return img[12 : 12+size], nil
}

// eachField calls fn for every field of a protobuf message with its number,
// its value if it is a varint, and its raw bytes (tag included).
func eachField(msg []byte, fn func(n protowire.Number, v uint64, raw []byte)) error {
	for len(msg) > 0 {
		n, t, tl := protowire.ConsumeTag(msg)
		if tl < 0 {
			return protowire.ParseError(tl)
		}
		vl := protowire.ConsumeFieldValue(n, t, msg[tl:])
		if vl < 0 {
			return protowire.ParseError(vl)
		}
		var v uint64
		if t == protowire.VarintType {
			v, _ = protowire.ConsumeVarint(msg[tl:])
		}
		fn(n, v, msg[:tl+vl])
		msg = msg[tl+vl:]
	}
	return nil
}

// fieldBytes is the payload of a raw length-delimited field.
func fieldBytes(raw []byte) []byte {
	_, _, tl := protowire.ConsumeTag(raw)
	b, _ := protowire.ConsumeBytes(raw[tl:])
	return b
}

// watchRestored waits for a restored process to end (wait is its
// keeper's) and then ends its container's shim, which is how ember-init
// learns of that end; not when a checkpoint killed it (c.dumped names it).
func watchRestored(log zerolog.Logger, c *container, pid, shimFD int, wait func() (int, error)) {
	code, err := wait()
	defer unix.Close(shimFD)
	if c.dumped.Load() == int64(pid) {
		return
	}
	log.Info().Int("pid", pid).Int("exit_code", code).AnErr("wait_error", err).
		Msg("restored function process ended; ending its container's shim")
	_ = unix.PidfdSendSignal(shimFD, unix.SIGKILL, nil, 0)
}
