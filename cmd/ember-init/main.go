// Command ember-init is the PID 1 of every Ember instance: it serves the host
// agent's socket and runs function containers (see hostagent/initd).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/ember-run/ember/hostagent/initd"
	"github.com/ember-run/ember/hostagent/initproto"
	"github.com/ember-run/ember/hostagent/shim"
	"github.com/rs/zerolog"
)

// version is set with -ldflags "-X main.version=...".
var version = "dev"

func init() {
	// Keep the main goroutine on the main thread, so that the main thread is
	// never one of the dedicated spawn threads that enter a container's mount
	// namespace and drop privileges (those threads are discarded).
	runtime.LockOSThread()
}

func main() {
	if shim.IsShim() { // no ember-shim beside it in the image
		shim.Run() // never returns
	}
	if os.Getenv("GOMAXPROCS") == "" {
		// One P: ember-init's work is short hand-offs between sockets. With
		// more, each hand-off wakes another thread, and a task switch is
		// most of what an invocation costs it on a paravirtualised host
		// (BenchmarkStageBudget: 32 switches and 1.4 ms of CPU per warm
		// invocation with two Ps, 14 and 0.8 ms with one).
		runtime.GOMAXPROCS(1)
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "ember-init:", err)
		os.Exit(1)
	}
}

func run() error {
	hostname, _ := os.Hostname()
	var (
		cfg      initd.Config
		logLevel string
		reap     string
		logMax   int64
		tmpMB    int64
	)
	flag.StringVar(&cfg.InstanceID, "instance-id", envOr("EMBER_INSTANCE_ID", hostname), "instance id reported to the agent (env EMBER_INSTANCE_ID)")
	flag.StringVar(&cfg.SocketDir, "socket-dir", initproto.SocketDir, "directory of the agent socket")
	flag.StringVar(&cfg.CodeMount, "code-mount", initproto.CodeMount, "directory holding one code directory per function version")
	flag.StringVar(&cfg.TaskDir, "task-dir", initproto.TaskDir, "where a container sees its code (read-only)")
	flag.StringVar(&cfg.TmpDir, "tmp-dir", "/tmp", "per-container tmpfs mount point")
	flag.Int64Var(&tmpMB, "tmp-size-mb", 64, "size of each container's /tmp (and /dev/shm) tmpfs, MiB")
	flag.StringVar(&cfg.LogDir, "log-dir", initproto.LogDir, "where the functions' output is kept, rotated (functions.log); if missing, output goes to stderr")
	flag.Int64Var(&logMax, "log-max-bytes", 16<<20, "rotate functions.log at this size (two older files are kept)")
	flag.StringVar(&cfg.Region, "region", envOr("AWS_REGION", "local"), "AWS_REGION exported to functions")
	flag.DurationVar(&cfg.StopGrace, "stop-grace", 2*time.Second, "SIGTERM to SIGKILL grace at shutdown")
	flag.DurationVar(&cfg.OrphanTimeout, "orphan-timeout", 0, "stop the instance once no agent has been connected for this long (0: never)")
	flag.StringVar(&reap, "reap-all", "auto", "reap every child with wait4(-1): true, false or auto (true when PID 1)")
	flag.StringVar(&cfg.ShimBinary, "shim", besideSelf("ember-shim"), "binary started as each container's shim (default: ember-shim beside ember-init, else ember-init itself)")
	flag.StringVar(&logLevel, "log-level", "info", "zerolog level")
	flag.Parse()
	cfg.Version = version
	if tmpMB < 1 {
		return fmt.Errorf("-tmp-size-mb %d: want at least 1", tmpMB)
	}
	cfg.TmpSizeBytes = tmpMB << 20
	switch reap {
	case "auto":
		cfg.ReapAll = os.Getpid() == 1
	case "true":
		cfg.ReapAll = true
	case "false":
	default:
		return fmt.Errorf("-reap-all %q: want true, false or auto", reap)
	}
	lvl, err := zerolog.ParseLevel(logLevel)
	if err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	log := zerolog.New(os.Stderr).Level(lvl).With().Timestamp().Str("instance", cfg.InstanceID).Logger()
	// The log directory is a host mount when the agent gives one; the
	// image's own (empty, read-only) directory cannot take the log, and the
	// output then goes to stderr.
	if out, err := initd.OpenRotating(filepath.Join(cfg.LogDir, "functions.log"), logMax, 2); err == nil {
		defer out.Close()
		cfg.Output = out
	} else {
		log.Info().Err(err).Msg("functions' output goes to stderr")
	}

	if cfg.ShimBinary == "" {
		log.Info().Msg("no ember-shim beside ember-init: ember-init is its containers' shim (each start takes longer)")
	}
	srv, err := initd.New(cfg, log)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return srv.Run(ctx)
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// besideSelf is the executable file name in this executable's directory, or
// "" if there is none.
func besideSelf(name string) string {
	self, err := os.Executable()
	if err != nil {
		return ""
	}
	p := filepath.Join(filepath.Dir(self), name)
	if st, err := os.Stat(p); err != nil || !st.Mode().IsRegular() || st.Mode()&0o111 == 0 {
		return ""
	}
	return p
}
