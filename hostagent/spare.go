package hostagent

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ember-run/ember/hostagent/initproto"
)

// spareNetns is a network namespace ember-init set aside on an instance
// for its next container with egress, already connected to the network:
// that container's start skips the CNI plugins (about 10 ms of a pool
// hit). One is made when the instance boots, off any invocation's path,
// and again in the background after a container takes it.
type spareNetns struct {
	id    string // ember-init's name for it (StartContainer.Netns)
	fd    int
	netID string // its network attachment
}

// egressAllowed reports whether in's containers may have egress (the
// agent's and the sub-pool's settings); hasNetwork, whether they can.
func (a *Agent) egressAllowed(in *instance) bool {
	return !a.cfg.NoNetwork && (in.subpool == nil || in.subpool.Network != NetworkNone)
}

func (a *Agent) hasNetwork(in *instance) bool { return a.deps.Network != nil && a.egressAllowed(in) }

// spareTimeout bounds setting a namespace aside and connecting it, and
// giving one back; spareRetry is how long an instance waits after a
// failure before it tries again (an ember-init older than TypeNetns never
// answers; a network that fails would fail every start).
const (
	spareTimeout = 10 * time.Second
	spareRetry   = time.Minute
)

// earlySpare is a booting instance's first spare, made by the agent in the
// instance's user namespace as soon as runc made it (netns.Helper) and
// connected while the instance starts, instead of after ember-init's
// Hello: the network's 20-25 ms of CNI overlap the boot. ember-init adopts
// it once it answers.
type earlySpare struct {
	done    chan struct{}
	cancel  context.CancelFunc
	sp      *spareNetns // when err is nil
	err     error
	took    time.Duration
	adopted bool // ember-init took it
}

// startEarlySpare makes in's first spare in the background, given the pid
// of its PID 1 before anything of it runs (called within Runtime.Create:
// the pid is still that process's); nil if the agent cannot (no helper)
// or in's containers have no network. The boot adopts or drops what it
// returns.
func (a *Agent) startEarlySpare(ctx context.Context, in *instance, pid uint32) *earlySpare {
	if a.netnsHelper == nil || !a.hasNetwork(in) {
		return nil
	}
	userns, err := os.Open("/proc/" + strconv.FormatUint(uint64(pid), 10) + "/ns/user")
	if err != nil {
		a.log.Warn().Err(err).Str("instance", in.id).Msg("a network namespace made while the instance starts")
		return nil
	}
	id := a.netnsID()
	e := &earlySpare{done: make(chan struct{})}
	ctx, e.cancel = context.WithTimeout(ctx, spareTimeout)
	go func() {
		defer close(e.done)
		defer e.cancel()
		t := time.Now()
		fd, err := a.netnsHelper.ForUserNamespace(ctx, userns)
		_ = userns.Close()
		if err != nil {
			e.err = err
			return
		}
		if e.sp, e.err = a.connectSpare(ctx, in, id, fd, nil); e.err == nil {
			e.took = time.Since(t)
		}
	}()
	return e
}

// drop stops e and releases what it made: its attachment, the agent's fd
// and, given the instance's client, ember-init's copy in case it adopted
// it after all (an adopt that failed after it was sent). Nil e is a no-op;
// after an adopt, nothing is left to drop.
func (e *earlySpare) drop(a *Agent, client *initClient) {
	if e == nil {
		return
	}
	e.cancel()
	<-e.done
	a.dropSpare(e.sp, client)
	e.sp = nil
}

// adopt hands e's namespace to ember-init (client) as a spare and returns
// it; on an error e keeps it (drop).
func (e *earlySpare) adopt(ctx context.Context, client *initClient) (*spareNetns, error) {
	select {
	case <-e.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if e.err != nil {
		return nil, e.err
	}
	f, err := client.call(ctx, initproto.TypeNetns, initproto.Netns{ID: e.sp.id, Adopt: true}, nil, []int{e.sp.fd}, initproto.TypeNetnsReady)
	if err != nil {
		return nil, fmt.Errorf("ember-init: %w", err)
	}
	closeFDs(f.FDs)
	var r initproto.Netns
	if err := f.Decode(&r); err != nil {
		return nil, fmt.Errorf("ember-init: %w", err)
	}
	if r.Error != "" || !r.Adopt || len(f.FDs) != 0 {
		return nil, fmt.Errorf("ember-init did not adopt it (%d fds): %s", len(f.FDs), r.Error)
	}
	sp := e.sp
	e.sp, e.adopted = nil, true
	return sp, nil
}

// prepareSpare sets a network namespace aside on in and connects it,
// unless in has one, one is on its way, or the last try failed within
// spareRetry. A failure is logged: the next container connects its own.
// early, the namespace the boot made (nil when none), is adopted instead
// of a new one if it can be, and dropped otherwise.
func (a *Agent) prepareSpare(in *instance, client *initClient, early *earlySpare) {
	defer early.drop(a, client) // a no-op once adopted
	if !a.hasNetwork(in) {
		return
	}
	a.mu.Lock()
	if in.spare != nil || in.sparing || in.state != stReady || time.Now().Before(in.noSpareUntil) {
		a.mu.Unlock()
		return
	}
	in.sparing = true
	a.mu.Unlock()
	ctx, cancel := context.WithTimeout(a.bg, spareTimeout)
	defer cancel()
	var sp *spareNetns
	var err error
	if early != nil {
		if sp, err = early.adopt(ctx, client); err != nil {
			a.log.Warn().Err(err).Str("instance", in.id).Msg("a network namespace made while the instance started")
		}
	}
	if sp == nil {
		sp, err = a.makeSpare(ctx, in, client)
	}
	a.mu.Lock()
	in.sparing = false
	keep := err == nil && in.state == stReady && in.spare == nil && in.client == client
	if keep {
		in.spare = sp
	}
	if err != nil {
		in.noSpareUntil = time.Now().Add(spareRetry)
	}
	a.mu.Unlock()
	switch {
	case err != nil:
		a.log.Warn().Err(err).Str("instance", in.id).Msg("set a network namespace aside")
	case !keep: // the instance went meanwhile
		a.dropSpare(sp, client)
	}
}

// makeSpare asks ember-init for a network namespace and connects it.
func (a *Agent) makeSpare(ctx context.Context, in *instance, client *initClient) (*spareNetns, error) {
	id := a.netnsID()
	fd, err := client.netns(ctx, id)
	if err != nil {
		return nil, err
	}
	return a.connectSpare(ctx, in, id, fd, client)
}

// connectSpare attaches namespace fd, set aside on in as id, to the
// network; on failure it releases it (ember-init's copy too, given client).
func (a *Agent) connectSpare(ctx context.Context, in *instance, id string, fd int, client *initClient) (*spareNetns, error) {
	sp := &spareNetns{id: id, fd: fd, netID: attachmentID(in.id, id)}
	if _, err := a.deps.Network.Attach(ctx, sp.netID, netnsPath(fd)); err != nil {
		a.dropSpare(sp, client)
		return nil, fmt.Errorf("connect it: %w", err)
	}
	return sp, nil
}

// netnsID is a new name for a namespace set aside (ember-init's key).
func (a *Agent) netnsID() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.seq++
	return "net-" + strconv.FormatUint(a.seq, 10)
}

// kickSpare prepares a spare for in in the background (after a container
// took one, or started without). Waited for at shutdown, like boots.
func (a *Agent) kickSpare(in *instance, client *initClient) {
	a.mu.Lock()
	if a.closing {
		a.mu.Unlock()
		return
	}
	a.starts.Add(1)
	a.mu.Unlock()
	go func() {
		defer a.starts.Done()
		a.prepareSpare(in, client, nil)
	}()
}

// takeSpare hands in's spare to a container starting, nil if none.
func (a *Agent) takeSpare(in *instance) *spareNetns {
	a.mu.Lock()
	defer a.mu.Unlock()
	sp := in.spare
	in.spare = nil
	return sp
}

// dropSpare releases a spare nobody will take: its attachment (address,
// interfaces), the agent's fd, and, given the instance's live client,
// ember-init's copy (which it also closes when its connection ends). It
// runs to the end even at shutdown.
func (a *Agent) dropSpare(sp *spareNetns, client *initClient) {
	if sp == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), spareTimeout)
	defer cancel()
	if client != nil {
		if err := client.releaseNetns(ctx, sp.id); err != nil {
			a.log.Debug().Err(err).Str("netns", sp.id).Msg("give a network namespace set aside back to ember-init")
		}
	}
	if err := a.deps.Network.Detach(ctx, sp.netID, netnsPath(sp.fd)); err != nil {
		a.log.Warn().Err(err).Str("attachment", sp.netID).Msg("release a network namespace set aside")
	}
	_ = unix.Close(sp.fd)
}

// netns asks ember-init to set a network namespace aside as id and returns
// it (an fd the caller owns).
func (c *initClient) netns(ctx context.Context, id string) (int, error) {
	f, err := c.call(ctx, initproto.TypeNetns, initproto.Netns{ID: id}, nil, nil, initproto.TypeNetnsReady)
	if err != nil {
		return -1, err
	}
	var r initproto.Netns
	if err := f.Decode(&r); err != nil {
		closeFDs(f.FDs)
		return -1, err
	}
	if r.Error != "" || len(f.FDs) != 1 {
		closeFDs(f.FDs)
		return -1, fmt.Errorf("ember-init set no network namespace aside (%d fds): %s", len(f.FDs), r.Error)
	}
	return f.FDs[0], nil
}

// releaseNetns gives the namespace set aside as id back to ember-init.
func (c *initClient) releaseNetns(ctx context.Context, id string) error {
	_, err := c.call(ctx, initproto.TypeNetns, initproto.Netns{ID: id, Release: true}, nil, nil, initproto.TypeNetnsReady)
	return err
}
