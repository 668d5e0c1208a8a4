package hostagent

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// keeperArg starts the agent's binary as a restore keeper.
const keeperArg = "criu-restore-keeper"

// A restored process is an orphan once CRIU exits, and an orphan goes to
// the nearest child subreaper among its ancestors, else to the host's init
// (which here reaps late: a checkpoint of it right after found its pid
// still taken). So the agent runs CRIU under a keeper, a child subreaper:
// the restored process becomes the keeper's child, and the keeper's exit
// status is its exit status.
//
//	<agent binary> criu-restore-keeper <command...>
//
// runs the command (CRIU's restore, through a shell that joins the
// container's cgroups), prints "restored <pid>" (read from the pid file
// named by the environment's EMBER_RESTORED_PID_FILE) on stdout once it
// succeeded, closes stdout, and waits for that process: it exits with its
// exit code, or 128 + the signal that ended it. A failed restore exits 125.

// IsKeeper reports whether this process was started as a restore keeper:
// the agent's commands (emberd, ember-agent) call RunKeeper first thing.
func IsKeeper() bool { return len(os.Args) > 1 && os.Args[1] == keeperArg }

// RunKeeper is the restore keeper; it never returns.
func RunKeeper() {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "keeper: become a subreaper:", err)
		os.Exit(125)
	}
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "keeper: no command")
		os.Exit(125)
	}
	cmd := exec.Command(os.Args[2], os.Args[3:]...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.ExtraFiles = []*os.File{os.NewFile(3, "fd3"), os.NewFile(4, "fd4")}
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "keeper:", err)
		os.Exit(125)
	}
	b, err := os.ReadFile(os.Getenv("EMBER_RESTORED_PID_FILE"))
	pid, perr := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || perr != nil {
		fmt.Fprintln(os.Stderr, "keeper: the restored pid:", errors.Join(err, perr))
		os.Exit(125)
	}
	fmt.Printf("restored %d\n", pid)
	os.Stdout.Close()
	for {
		var ws unix.WaitStatus
		wpid, err := unix.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "keeper: wait:", err)
			os.Exit(125)
		}
		if wpid != pid {
			continue // another orphan of CRIU's: reaped
		}
		if ws.Signaled() {
			os.Exit(128 + int(ws.Signal()))
		}
		os.Exit(ws.ExitStatus())
	}
}

// startKeeper starts a keeper running command (with files as its fds 3
// and 4) and returns the restored process's pid once the restore is done,
// and a function that waits for the keeper: for the restored process's end.
func startKeeper(command []string, env []string, files []*os.File) (int, func() (int, error), error) {
	self, err := os.Executable()
	if err != nil {
		return 0, nil, err
	}
	cmd := exec.Command(self, append([]string{keeperArg}, command...)...)
	cmd.Env = env
	cmd.SysProcAttr = &unix.SysProcAttr{Setpgid: true} // a hung restore is killed whole
	cmd.ExtraFiles = files
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, nil, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return 0, nil, err
	}
	// A restore that hangs is given up: the keeper's group (the shell and
	// CRIU) is killed.
	t := time.AfterFunc(checkpointTimeout, func() { _ = unix.Kill(-cmd.Process.Pid, unix.SIGKILL) })
	line, rerr := bufio.NewReader(out).ReadString('\n')
	t.Stop()
	_, _ = io.Copy(io.Discard, out)
	pidStr, ok := strings.CutPrefix(strings.TrimSpace(line), "restored ")
	pid, perr := strconv.Atoi(pidStr)
	if rerr != nil || !ok || perr != nil {
		_ = cmd.Wait()
		return 0, nil, fmt.Errorf("restore: %s", strings.TrimSpace(stderr.String()))
	}
	wait := func() (int, error) {
		err := cmd.Wait()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), nil
		}
		return 0, err
	}
	return pid, wait, nil
}
