package hostagent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/ember-run/ember/engine/pool"
	"github.com/ember-run/ember/hostagent/initproto"
	"github.com/ember-run/ember/hostagent/sandbox"
)

// Restarts keep the pool warm: at a clean stop with Config.KeepInstances,
// the agent leaves its idle instances running (ember-init keeps their
// containers; it accepts a new connection), writes what it knows of each
// into the instance's directory, and takes them out of Redis. The next
// start of the same agent (same id and state directory) reads those
// records, checks that each instance is what it would boot now (the same
// image: an upgraded ember-init is not taken back; the same runtime spec
// and configuration), reconnects to each ember-init, checks what it still
// holds, reopens the containers' cgroups, accounting and network
// namespaces, and puts the instances back into their pools, hot versions
// included. What cannot be reattached is destroyed, as every instance was
// before.
//
// A record lives only between a stop and the next start (the start
// removes it): after a crash there is none, and the instance is destroyed
// (the agent cannot know what ran on it since). Instances with state
// resources attached, of a sub-pool, or still busy at the stop are not
// left running.

// errOutdated: an instance left running is not what this start of the
// agent would boot: made from another image (an upgraded ember-init,
// ember-shim or busybox, or another image format) or with another runtime
// spec (another build of the sandbox, or its configuration), or given
// something else by the agent (settingsDigest; a record of before
// record.Settings).
var errOutdated = errors.New("not as this start would boot it")

// recordName is an instance's record, in its directory.
const recordName = "agent.json"

// record is what the agent knows of an instance it left running.
type record struct {
	Agent      string         `json:"agent"`
	ID         string         `json:"id"`
	Class      string         `json:"class"`
	MemoryMB   int64          `json:"memory_mb"`
	Needs      pool.Resources `json:"needs"`
	Slot       int            `json:"slot"`
	HostUID    int            `json:"host_uid"`
	CgroupPath string         `json:"cgroup_path"`
	Tenant     string         `json:"tenant,omitempty"`
	// LastUsed is when it last ran an invocation (Unix ms).
	LastUsed   int64             `json:"last_used,omitempty"`
	Containers []containerRecord `json:"containers,omitempty"`
	// Network is the agent's network for containers when it stopped
	// (networkName); absent in records of before the field.
	Network string `json:"network,omitempty"`
	// Settings digests what the agent gave it besides its container
	// (settingsDigest).
	Settings string `json:"settings,omitempty"`
}

// containerRecord is one container of a recorded instance.
type containerRecord struct {
	ID         string `json:"id"`
	Key        string `json:"key"`
	VersionKey string `json:"version_key"`
	MemoryMB   int64  `json:"memory_mb"`
	// NetID names its network attachment ("" without egress).
	NetID string `json:"net_id,omitempty"`
	// LastUsed is when it last ran an invocation (Unix ms).
	LastUsed int64 `json:"last_used,omitempty"`
}

// keepable reports whether in may be left running at shutdown. a.mu held.
func (a *Agent) keepableLocked(in *instance) bool {
	return a.cfg.KeepInstances && in.state == stReady && !in.busyLocked() && in.subpool == nil && !in.hasState &&
		in.client != nil && !in.lost && in.missing == 0 && a.insts[in.id] == in
}

// leave forgets in without destroying it: its record is written, its
// connection closed (ember-init keeps the containers), its meters and
// network namespace handles closed, its attachments and cgroups kept. It
// reports false, having changed nothing, if the record cannot be written.
func (a *Agent) leave(in *instance) bool {
	if !a.cfg.KeepInstances {
		return false
	}
	in.op.Lock() // no dispatch or reclaim is changing its containers
	defer in.op.Unlock()
	a.mu.Lock()
	if !a.keepableLocked(in) {
		a.mu.Unlock()
		return false
	}
	r := record{Agent: a.cfg.AgentID, ID: in.id, Class: in.class, MemoryMB: in.memoryMB, Needs: in.needs,
		Slot: in.slot, HostUID: in.hostUID, CgroupPath: in.cgroupPath, Tenant: in.tenant, LastUsed: in.lastUsed.UnixMilli(),
		Network: a.networkName(), Settings: a.settingsDigest()}
	for _, c := range in.containers {
		if c.stopped || c.retire != "" {
			continue // on its way out: the next start stops it (not in the record)
		}
		r.Containers = append(r.Containers, containerRecord{ID: c.id, Key: c.key, VersionKey: c.versionKey, MemoryMB: c.memoryMB,
			NetID: c.netID, LastUsed: c.lastUsed.UnixMilli()})
	}
	a.mu.Unlock()
	b, err := json.Marshal(r)
	if err == nil {
		err = writeFileAtomic(filepath.Join(in.dir, recordName), b)
	}
	if err != nil {
		a.log.Error().Err(err).Str("instance", in.id).Msg("record the instance for the next start; destroying it")
		return false
	}
	a.mu.Lock()
	if !a.keepableLocked(in) { // lost meanwhile (its watch destroys it)
		a.mu.Unlock()
		_ = os.Remove(filepath.Join(in.dir, recordName))
		return false
	}
	delete(a.insts, in.id)
	in.state = stGone // its connection's end is not a loss
	client, relay, spare := in.client, in.relay, in.spare
	in.relay, in.spare = nil, nil
	cs := make([]*container, 0, len(in.containers))
	for _, c := range in.containers {
		cs = append(cs, c)
	}
	a.mu.Unlock()
	client.close()
	if relay != nil {
		relay.Close()
	}
	for _, c := range cs {
		closeMeter(a.log, c.meter)
		if c.netnsFD >= 0 {
			_ = unix.Close(c.netnsFD)
			c.netnsFD = -1
		}
	}
	a.dropSpare(spare, nil) // ember-init closed its copy with the connection
	a.log.Info().Str("instance", in.id).Str("class", in.class).Str("tenant", in.tenant).Int("containers", len(r.Containers)).
		Msg("instance left running for the next start")
	return true
}

// lastUse is a recorded last use (Unix ms): keep-alives go on from it.
// Now when none was recorded.
func lastUse(ms int64) time.Time {
	if ms > 0 {
		return time.UnixMilli(ms)
	}
	return time.Now()
}

// writeFileAtomic writes b to path through a temporary sibling.
func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// readRecord reads and removes the record in dir (one start uses it).
func readRecord(dir string) (record, error) {
	p := filepath.Join(dir, recordName)
	b, err := os.ReadFile(p)
	if err != nil {
		return record{}, err
	}
	if err := os.Remove(p); err != nil {
		return record{}, err
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return record{}, fmt.Errorf("record %s: %w", p, err)
	}
	return r, nil
}

// reattach takes back the instances of ids that a clean stop left running
// and whose record checks out: it reconnects, reconciles their containers
// with what ember-init holds and adds them to a.insts, ready, not yet in
// Redis (readd) nor measured (measureReattached). It returns those it took.
func (a *Agent) reattach(ctx context.Context, ids []string) []*instance {
	var out []*instance
	for _, id := range ids {
		dir := filepath.Join(a.cfg.StateDir, "instances", id)
		r, err := readRecord(dir)
		if errors.Is(err, os.ErrNotExist) {
			continue // a crash, or an instance that was not left running
		}
		log := a.log.With().Str("instance", id).Logger()
		if err == nil {
			var in *instance
			in, err = a.reattachOne(ctx, log, dir, r)
			if err == nil {
				out = append(out, in)
				continue
			}
		}
		if errors.Is(err, errOutdated) { // expected after an upgrade or a change of configuration
			log.Info().Err(err).Msg("the instance is not as this start would boot it; destroying it")
		} else {
			log.Warn().Err(err).Msg("cannot reattach to the instance; destroying it")
		}
		a.forgetRecord(ctx, r)
	}
	return out
}

// reattachOne reconnects to the instance of r.
func (a *Agent) reattachOne(ctx context.Context, log zerolog.Logger, dir string, r record) (*instance, error) {
	switch {
	case r.Agent != a.cfg.AgentID || r.ID != filepath.Base(dir):
		return nil, fmt.Errorf("the record names agent %q, instance %q", r.Agent, r.ID)
	case r.HostUID != a.cfg.MappedRootUID+r.Slot*a.cfg.UIDRange:
		return nil, fmt.Errorf("its uid range (%d) is not this agent's slot %d any more", r.HostUID, r.Slot)
	}
	if d := a.settingsDigest(); d == "" || r.Settings != d {
		return nil, fmt.Errorf("%w: given %q, this start gives %q (another configuration)", errOutdated, r.Settings, d)
	}
	a.mu.Lock()
	for _, o := range a.insts {
		if o.slot == r.Slot {
			a.mu.Unlock()
			return nil, fmt.Errorf("its uid slot %d is taken", r.Slot)
		}
	}
	a.mu.Unlock()
	in := &instance{
		id: r.ID, class: r.Class, memoryMB: r.MemoryMB, needs: r.Needs, slot: r.Slot, hostUID: r.HostUID,
		dir: dir, state: stReady, tenant: r.Tenant, lastUsed: lastUse(r.LastUsed), cgroupPath: r.CgroupPath,
		containers: map[string]*container{}, codes: map[string]bool{}, parked: map[string]*parked{},
	}
	// An instance runs the ember-init and ember-shim it booted with, in the
	// sandbox it booted in: after an upgrade of either, or of the sandbox,
	// one of the old build must not serve again, least of all a new tenant
	// from the warm pool.
	if same, err := a.deps.Runtime.SameSpec(ctx, r.ID, a.instanceSpec(in)); err != nil {
		return nil, err
	} else if !same {
		return nil, fmt.Errorf("%w: its container (image, runtime spec) is not the one this start makes", errOutdated)
	}
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	client, err := dialInit(dctx, filepath.Join(in.sockDir(), initproto.SocketName), in.id, false, a.initEvents(in))
	if err != nil {
		return nil, err
	}
	// fail undoes what was rebuilt: the instance is destroyed next.
	fail := func(err error) (*instance, error) {
		client.close()
		for _, c := range in.containers {
			if c.netnsFD >= 0 {
				_ = unix.Close(c.netnsFD)
			}
		}
		return nil, err
	}
	// stop stops a container the agent does not take back (each with its
	// own deadline: a process may take StopGrace to go).
	stop := func(id, netID string) error {
		sctx, cancel := context.WithTimeout(ctx, a.cfg.StopGrace+5*time.Second)
		defer cancel()
		if err := client.stop(sctx, id, a.cfg.StopGrace); err != nil {
			return err
		}
		a.dropContainer(ctx, log, in, id, netID)
		return nil
	}
	held := map[string]bool{}
	for _, id := range client.hello.Containers {
		held[id] = true
		a.raiseSeq(id)
	}
	for _, cr := range r.Containers {
		if !held[cr.ID] {
			log.Info().Str("container", cr.ID).Msg("a recorded container is gone from its instance")
			a.dropContainer(ctx, log, in, cr.ID, cr.NetID)
			continue
		}
		delete(held, cr.ID)
		if cr.NetID != "" && !a.sameNetwork(r.Network) {
			// Its egress would outlive the operator's change (--no-network,
			// another bridge or subnet): the version's next invocation
			// starts a container on this start's network.
			log.Info().Str("container", cr.ID).Str("was", r.Network).Str("now", a.networkName()).
				Msg("the container's network is not this start's; stopping it")
			if err := stop(cr.ID, cr.NetID); err != nil {
				return fail(err)
			}
			continue
		}
		c, err := a.reattachContainer(dctx, in, client, cr)
		if err != nil {
			log.Warn().Err(err).Str("container", cr.ID).Msg("cannot reattach to a container; stopping it")
			if err := stop(cr.ID, cr.NetID); err != nil {
				return fail(err)
			}
			continue
		}
		in.containers[c.key] = c
	}
	for id := range held { // not recorded: on its way out at the stop
		if err := stop(id, attachmentID(in.id, id)); err != nil {
			return fail(err)
		}
	}
	// A start's CPU boost does not outlive the agent that gave it: the
	// quotas go back to their own, containers first (boost.go).
	for _, c := range in.containers {
		if err := c.cg.SetCPUQuota(sandbox.QuotaUs(containerVCPU(in, c.memoryMB))); err != nil {
			log.Warn().Err(err).Str("container", c.id).Msg("put back the container's CPU quota")
		}
	}
	a.boostMu.Lock()
	a.restoreInstanceQuota(log, in)
	a.boostMu.Unlock()
	a.mu.Lock()
	in.client = client
	a.insts[in.id] = in
	a.mu.Unlock()
	log.Info().Str("class", in.class).Str("tenant", in.tenant).Int("containers", len(in.containers)).Msg("reattached to an instance left running")
	return in, nil
}

// settingsDigest digests what the agent gives its instances that their
// container does not hold (SameSpec compares that): the content of their
// resolv.conf and their containers' pids limit. An instance given
// otherwise (another configuration, or a record of before the field) is
// not taken back.
func (a *Agent) settingsDigest() string {
	b, err := json.Marshal(struct {
		ResolvConf         string
		ContainerPidsLimit int64
	}{a.resolvConf(), a.cfg.ContainerPidsLimit})
	if err != nil {
		return "" // never equal to a record's: not taken back
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// networkName names the network this agent attaches containers with
// egress to: its bridge and subnet, or "none" without a network.
func (a *Agent) networkName() string {
	if a.deps.Network == nil {
		return "none"
	}
	return a.cfg.Network.Bridge + " " + a.cfg.Network.Subnet
}

// sameNetwork reports whether containers attached under a record's
// network (recorded) are attached to this start's. A record of before the
// field names none: the same network unless this start has none.
func (a *Agent) sameNetwork(recorded string) bool {
	if recorded == "" {
		return a.deps.Network != nil
	}
	return recorded == a.networkName()
}

// raiseSeq makes the agent's container counter pass the number ending
// container id: new ids must not repeat a container's that outlived an
// earlier life of the agent.
func (a *Agent) raiseSeq(id string) {
	if i := strings.LastIndexByte(id, '-'); i >= 0 {
		if n, err := strconv.ParseUint(id[i+1:], 10, 64); err == nil {
			a.mu.Lock()
			a.seq = max(a.seq, n)
			a.mu.Unlock()
		}
	}
}

// dropContainer releases what is left of a container of in that is gone
// or was stopped: its network address and its cgroup.
func (a *Agent) dropContainer(ctx context.Context, log zerolog.Logger, in *instance, id, netID string) {
	a.endBoost(in, id)
	a.releaseNet(ctx, netID)
	if cg, err := a.deps.Cgroups.Open(in.cgroupPath, id); err == nil {
		if err := cg.Remove(); err != nil {
			log.Warn().Err(err).Str("container", id).Msg("remove container cgroup")
		}
	}
}

// reattachContainer rebuilds the agent's side of a running container: its
// cgroup and, with egress, its network namespace (a repeated Start is
// idempotent and answers with it).
func (a *Agent) reattachContainer(ctx context.Context, in *instance, client *initClient, cr containerRecord) (*container, error) {
	cg, err := a.deps.Cgroups.Open(in.cgroupPath, cr.ID)
	if err != nil {
		return nil, err
	}
	c := &container{id: cr.ID, key: cr.Key, versionKey: cr.VersionKey, cg: cg, lastUsed: lastUse(cr.LastUsed),
		memoryMB: cr.MemoryMB, netnsFD: -1, netID: cr.NetID, oomKills: cg.OOMKills()}
	if cr.NetID == "" {
		return c, nil
	}
	started, fd, err := client.start(ctx, initproto.StartContainer{ContainerID: cr.ID, DeferSpawn: true}, nil)
	switch {
	case err != nil:
		return nil, err
	case started.Error != "":
		return nil, errors.New(started.Error)
	case fd < 0:
		return nil, errors.New("ember-init sent no network namespace")
	}
	c.netnsFD = fd
	return c, nil
}

// measureReattached attaches accounting to the reattached containers (once
// it is open). Before watchReattached: nothing else touches them yet.
func (a *Agent) measureReattached(ins []*instance) {
	for _, in := range ins {
		for _, c := range in.containers {
			c.meter = a.attachMeter(a.log, c.cg)
		}
	}
}

// watchReattached starts watching the reattached instances' connections
// (after readd: one that died meanwhile is retired and replaced, as a
// ready instance's loss is).
func (a *Agent) watchReattached(ins []*instance) {
	for _, in := range ins {
		a.mu.Lock()
		a.watchers.Add(1)
		a.mu.Unlock()
		go a.watch(in, in.client)
	}
}

// keptNets names the network attachments of the reattached containers.
func keptNets(ins []*instance) map[string]bool {
	out := map[string]bool{}
	for _, in := range ins {
		for _, c := range in.containers {
			if c.netID != "" {
				out[c.netID] = true
			}
		}
	}
	return out
}

// readd puts reattached instances back into Redis, as reregister does for
// instances Redis lost (addBack).
func (a *Agent) readd(ctx context.Context, ins []*instance) error {
	for _, in := range ins { // before watchReattached: nothing else changes them yet
		hot := make([]string, 0, len(in.containers))
		for _, c := range in.containers {
			hot = append(hot, c.versionKey)
		}
		if err := a.addBack(ctx, in.id, in.class, in.tenant, hot); err != nil {
			return err
		}
	}
	return nil
}

// forgetRecord releases the network addresses of a record's containers
// (the instance is destroyed with the other stale ones).
func (a *Agent) forgetRecord(ctx context.Context, r record) {
	for _, cr := range r.Containers {
		a.releaseNet(ctx, cr.NetID)
	}
}

// releaseNet releases the address of an attachment whose namespace is
// gone or no longer the agent's.
func (a *Agent) releaseNet(ctx context.Context, netID string) {
	if netID == "" || a.deps.Network == nil {
		return
	}
	if err := a.deps.Network.Detach(ctx, netID, ""); err != nil {
		a.log.Warn().Err(err).Str("attachment", netID).Msg("release a container's network address")
	}
}
