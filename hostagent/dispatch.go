package hostagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/ember-run/ember/engine/pool"
	"github.com/ember-run/ember/hostagent/codefetch"
	"github.com/ember-run/ember/hostagent/dispatchpb"
	"github.com/ember-run/ember/hostagent/initproto"
	"github.com/ember-run/ember/hostagent/network"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// dispatchServer serves dispatchpb.Agent.
type dispatchServer struct {
	dispatchpb.UnimplementedAgentServer
	a *Agent
}

var _ dispatchpb.AgentServer = (*dispatchServer)(nil)

// initReplySlack is how long past an invocation's deadline the agent waits
// for ember-init's Result (it kills the function at the deadline, then
// reaps it) before it declares the instance unresponsive.
const initReplySlack = 5 * time.Second

// Dispatch implements dispatchpb.AgentServer.
func (s *dispatchServer) Dispatch(ctx context.Context, req *dispatchpb.DispatchRequest) (*dispatchpb.DispatchResponse, error) {
	return s.a.dispatch(ctx, req)
}

func (a *Agent) dispatch(ctx context.Context, req *dispatchpb.DispatchRequest) (*dispatchpb.DispatchResponse, error) {
	arrived := time.Now()
	if req.GetTenant() == "" || req.GetFunction() == "" || req.GetInstanceId() == "" || req.GetInvocationId() == "" {
		return nil, status.Error(codes.InvalidArgument, "dispatch needs invocation_id, instance_id, tenant and function")
	}
	digestHex, err := codefetch.ParseDigest(req.GetCodeDigest())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	log := a.log.With().Str("instance", req.GetInstanceId()).Str("tenant", req.GetTenant()).
		Str("function", req.GetFunction()).Str("version", req.GetVersion()).Str("invocation", req.GetInvocationId()).Logger()

	a.mu.Lock()
	in := a.insts[req.GetInstanceId()]
	switch {
	case a.closing:
		a.mu.Unlock()
		return nil, status.Error(codes.Unavailable, "agent shutting down")
	case in == nil || in.state != stReady:
		a.mu.Unlock()
		return nil, status.Errorf(codes.NotFound, "instance %s not on agent %s", req.GetInstanceId(), a.cfg.AgentID)
	case (in.running > 0 || in.parkedMB > 0) && in.runningMB+in.parkedMB+dispatchMB(in, req) > in.memoryMB && a.needsRoomLocked(in, req):
		a.mu.Unlock()
		// Aborted, not Unavailable: the instance is fine and the connection
		// too; the scheduler retries elsewhere and keeps this instance.
		return nil, status.Errorf(codes.Aborted, "instance %s is running another invocation and has no memory for a second", in.id)
	case in.tenant != "" && in.tenant != req.GetTenant():
		a.mu.Unlock()
		log.Warn().Str("bound_tenant", in.tenant).Msg("dispatch refused: instance belongs to another tenant")
		return nil, status.Errorf(codes.PermissionDenied, "instance %s belongs to another tenant", in.id)
	case in.subpool != nil && in.subpool.Tenant != req.GetTenant():
		a.mu.Unlock()
		log.Warn().Str("subpool", in.subpool.Name).Msg("dispatch refused: the sub-pool is reserved for another tenant")
		return nil, status.Errorf(codes.PermissionDenied, "instance %s is reserved for another tenant", in.id)
	}
	claimed := in.tenant == ""
	in.tenant = req.GetTenant()
	mb := dispatchMB(in, req)
	in.running++
	in.runningMB += mb
	a.mu.Unlock()
	if claimed {
		// The instance's replacement in the warming pool boots once this
		// dispatch's start is over: when it ends or after afterStartDelay,
		// whichever is first, so that on a small host it does not take the
		// CPU from the start.
		log.Info().Str("class", in.class).Msg("instance left the warming pool; refilling")
		t := time.AfterFunc(afterStartDelay, a.kickRefill)
		defer func() {
			if t.Stop() {
				a.kickRefill()
			}
		}()
	}
	defer func() {
		a.mu.Lock()
		in.running--
		in.runningMB -= mb
		in.lastUsed = time.Now()
		a.mu.Unlock()
	}()
	resp, err := a.run(ctx, log, in, req, digestHex)
	if t := resp.GetTiming(); t != nil {
		// The agent's own time: all of it but ember-init's round trip.
		t.AgentNs = time.Since(arrived).Nanoseconds() - t.InitRoundTripNs
	}
	if err != nil {
		if errors.Is(err, errInitGone) {
			a.breakInstance(in, err.Error())
			// FailedPrecondition: this instance is gone; the agent and its
			// connection are fine (Unavailable would make schedulers drop the
			// connection and every other invocation on it).
			return nil, status.Errorf(codes.FailedPrecondition, "instance %s lost: %v", in.id, err)
		}
		if st, ok := status.FromError(err); ok {
			return nil, st.Err()
		}
		log.Error().Err(err).Msg("dispatch failed")
		return nil, status.Error(codes.Internal, err.Error())
	}
	return resp, nil
}

// needsRoomLocked: the dispatch needs memory on the instance. A resume
// does not (its memory is the parked one's), unless its process was
// checkpointed and the memory given back. Caller holds a.mu.
func (a *Agent) needsRoomLocked(in *instance, req *dispatchpb.DispatchRequest) bool {
	if req.GetResume() == nil {
		return true
	}
	p := in.parked[req.GetInvocationId()]
	return p != nil && p.mb == 0
}

// afterStartDelay bounds how long work that a start causes but does not
// need waits, so as not to take the CPU from it: the replacement of an
// instance taken from the warming pool, of a network namespace set aside
// (spare.go).
const afterStartDelay = 100 * time.Millisecond

// dispatchMB is the memory a dispatch's container gets on in.
func dispatchMB(in *instance, req *dispatchpb.DispatchRequest) int64 {
	if mb := req.GetMemoryMb(); mb > 0 && mb < in.memoryMB {
		return mb
	}
	return in.memoryMB
}

// run ensures the version's container (holding in.op: one dispatch at a
// time changes the instance's containers) and invokes it (without: another
// container of the instance may run an invocation meanwhile). Errors
// wrapping errInitGone mean the instance is lost.
func (a *Agent) run(ctx context.Context, log zerolog.Logger, in *instance, req *dispatchpb.DispatchRequest, digestHex string) (*dispatchpb.DispatchResponse, error) {
	if req.GetResume() != nil {
		return a.resume(ctx, log, in, req)
	}
	in.op.Lock()
	locked := true
	defer func() { // a panic must not leave the instance locked for good
		if locked {
			in.op.Unlock()
		}
	}()
	c, client, kind, deliver, resp, err := a.setUp(ctx, log, in, req, digestHex)
	if err != nil || resp != nil {
		return resp, err
	}
	logID := a.configureLogs(ctx, log, in, client, req.GetTenant(), req.GetLogService())
	a.mu.Lock()
	c.inUse++ // no eviction, reclaim or retirement stops it while it runs
	a.mu.Unlock()
	locked = false
	in.op.Unlock()
	defer a.releaseContainer(in, c)
	return a.invoke(ctx, log, in, client, c, req, kind, deliver, logID)
}

// setUp finds or starts the dispatch's container; for a pre-load it also
// starts the process and returns the response. Caller holds in.op.
func (a *Agent) setUp(ctx context.Context, log zerolog.Logger, in *instance, req *dispatchpb.DispatchRequest,
	digestHex string) (*container, *initClient, dispatchpb.StartKind, time.Duration, *dispatchpb.DispatchResponse, error) {
	a.mu.Lock()
	alive := in.state == stReady
	a.mu.Unlock()
	if !alive {
		return nil, nil, 0, 0, nil, status.Errorf(codes.FailedPrecondition, "instance %s was retired", in.id)
	}
	vk := pool.VersionKey(req.GetTenant(), req.GetFunction(), req.GetVersion())
	key := containerKey(vk, req.GetCodeDigest(), req.GetHandler(), req.GetNetwork(), req.GetMemoryMb(), req.GetTimeoutMs(), req.GetEnv())
	for _, m := range req.GetState() { // a container sees the resources it started with
		key = containerKey(key, m.GetName(), m.GetPath(), "", m.GetSizeMb(), 0, nil)
	}
	a.mu.Lock()
	c := in.containers[key]
	client := in.client
	inUse := c != nil && c.inUse > 0
	a.mu.Unlock()
	if inUse { // one invocation per container (e.g. a claim that outlived its lease)
		return nil, nil, 0, 0, nil, status.Errorf(codes.Aborted, "instance %s is running an invocation of this version", in.id)
	}

	kind := dispatchpb.StartKind_START_KIND_HOT
	var deliver time.Duration
	if c == nil {
		kind = dispatchpb.StartKind_START_KIND_CONTAINER
		t0 := time.Now()
		var err error
		c, err = a.startContainer(ctx, log, in, client, req, vk, key, digestHex)
		var pe *packageError
		if errors.As(err, &pe) {
			log.Warn().Err(pe.err).Msg("function package cannot be delivered")
			return nil, nil, 0, 0, &dispatchpb.DispatchResponse{
				Status:    dispatchpb.Status_STATUS_FUNCTION_ERROR,
				ErrorType: "Runtime.InvalidPackage",
				Payload:   pe.document(),
				Start:     dispatchpb.StartKind_START_KIND_CONTAINER,
			}, nil
		}
		if err != nil {
			return nil, nil, 0, 0, nil, err
		}
		deliver = time.Since(t0)
	}
	if req.GetPreload() {
		resp, err := a.preload(ctx, log, client, c, kind, deliver, req.GetPreloadTag())
		if err == nil && resp == nil {
			err = status.Error(codes.Internal, "pre-load returned nothing")
		}
		return nil, nil, 0, 0, resp, err
	}
	return c, client, kind, deliver, nil, nil
}

// invokeRun is one invocation in container c, from its Invoke to its
// Result, across parks (park.go).
type invokeRun struct {
	in       *instance
	client   *initClient
	c        *container
	req      *dispatchpb.DispatchRequest
	kind     dispatchpb.StartKind
	deliver  time.Duration // the container's start here (startContainer), 0 if it ran
	logID    string
	deadline int64 // unix ms, 0 for none
	mark     Sample
	measured bool
	metering meterSample
	t0       time.Time // the Invoke's send (the invocation's wall time)
	sent     time.Time // the last send to ember-init: Invoke or a call's result
	pending  *pendingInvoke
}

// invoke runs the invocation in c, which the caller marked in use.
func (a *Agent) invoke(ctx context.Context, log zerolog.Logger, in *instance, client *initClient, c *container,
	req *dispatchpb.DispatchRequest, kind dispatchpb.StartKind, deliver time.Duration, logID string) (*dispatchpb.DispatchResponse, error) {

	r := &invokeRun{in: in, client: client, c: c, req: req, kind: kind, deliver: deliver, logID: logID,
		deadline: req.GetDeadlineUnixMs()}
	if r.deadline == 0 && req.GetTimeoutMs() > 0 {
		r.deadline = time.Now().Add(time.Duration(req.GetTimeoutMs()) * time.Millisecond).UnixMilli()
	}
	r.metering.on = c.meter != nil && a.meterSeq.Add(1)%meterSampleEvery == 0
	r.metering.around(func() { r.mark, r.measured = markUsage(log, c.meter) }) // accounting
	r.t0 = time.Now()
	r.sent = r.t0
	var err error
	r.pending, err = client.startInvoke(initproto.Invoke{
		ID: req.GetInvocationId(), ContainerID: c.id, DeadlineUnixMs: r.deadline,
		TraceID: req.GetTraceId(), FunctionARN: req.GetFunctionArn(), LogService: logID,
	}, req.GetPayload())
	return a.finish(ctx, log, r, err)
}

// finish waits for run r's Result (or parks it when its function makes a
// call) and builds the response. err is the Invoke's send error, if any.
func (a *Agent) finish(ctx context.Context, log zerolog.Logger, r *invokeRun, err error) (*dispatchpb.DispatchResponse, error) {
	in, c, req, kind := r.in, r.c, r.req, r.kind
	ictx := ctx
	if r.deadline > 0 {
		var cancel context.CancelFunc
		ictx, cancel = context.WithDeadline(ctx, time.UnixMilli(r.deadline).Add(a.cfg.StopGrace+initReplySlack))
		defer cancel()
	}
	var (
		res  initproto.Result
		body []byte
		cf   *callFrame
	)
	if err == nil {
		res, body, cf, err = r.pending.wait(ictx)
	}
	if cf != nil {
		return a.park(log, r, cf)
	}
	wall := time.Since(r.t0)
	timing := &dispatchpb.Timing{InvokeSentUnixNs: r.sent.UnixNano(), InitRoundTripNs: time.Since(r.sent).Nanoseconds()}
	if err != nil {
		if ctx.Err() != nil {
			// The caller gave up (a consumer whose partition was revoked and
			// whose drain time ran out, an emberd that died): the handler
			// must not keep running on records another consumer now owns.
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.cfg.StopGrace+initReplySlack)
			a.stopContainer(sctx, in, c, true, "the caller cancelled the invocation")
			cancel()
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		if ictx.Err() != nil {
			return nil, fmt.Errorf("%w: no result %v past the deadline", errInitGone, a.cfg.StopGrace+initReplySlack)
		}
		return nil, err
	}
	if res.Error != "" {
		// ember-init could not run it (e.g. it lost the container): forget
		// the container so the next dispatch starts it afresh.
		a.stopContainer(ctx, in, c, true, "ember-init refused an invocation")
		return nil, status.Errorf(codes.Internal, "ember-init: %s", res.Error)
	}
	st, err := mapStatus(res.Status)
	if err != nil {
		return nil, err
	}
	if st == dispatchpb.Status_STATUS_CRASHED {
		// The kernel's out-of-memory killer shows only as a SIGKILL; its
		// count in the container's memory cgroup tells it apart.
		n := c.cg.OOMKills()
		a.mu.Lock()
		oom := n > c.oomKills
		c.oomKills = max(c.oomKills, n)
		a.mu.Unlock()
		if oom {
			res.ErrorType = "Runtime.OutOfMemory"
			body = fmt.Appendf(nil, `{"errorMessage":"Runtime exited: out of memory (the %d MB limit)","errorType":"Runtime.OutOfMemory"}`, c.memoryMB)
		}
	}
	a.mu.Lock()
	tag := c.preloadTag
	c.preloadTag = ""
	a.mu.Unlock()
	initNs := res.InitDurationNs
	if initNs > 0 {
		// A process was spawned for this invocation (first use, or a
		// respawn after a crash or timeout): not a hot start.
		kind = dispatchpb.StartKind_START_KIND_CONTAINER
		if r.deliver > 0 && res.HandlerStartUnixNs > 0 {
			// Started here: from the start's beginning (the Invoke was sent
			// right after it) to the handler's, as ember-init's spawn (its
			// InitDurationNs begins there) is inside the start.
			initNs = max(initNs, res.HandlerStartUnixNs-r.t0.Add(-r.deliver).UnixNano())
		} else {
			initNs += r.deliver.Nanoseconds()
		}
	}
	ev := log.Debug()
	if st != dispatchpb.Status_STATUS_OK {
		ev = log.Info().Str("error_type", res.ErrorType)
	}
	ev.Str("status", res.Status).Stringer("start", kind).Int64("duration_ns", res.DurationNs).Msg("invocation done")
	var u *Usage
	r.metering.around(func() { u = usageSince(log, c.meter, r.mark, r.measured) })
	if r.metering.on {
		a.usageMetrics.countMetering(r.metering.cpu * meterSampleEvery)
	}
	usage, line := a.recordUsage(log, req, time.Duration(res.DurationNs), wall, time.Duration(initNs), c.memoryMB, u, r.logID != "")
	if r.logID != "" {
		a.shipReport(log, in, r.client, req, c, r.logID, line, res, initNs, u)
	}
	return &dispatchpb.DispatchResponse{
		Status: st, Payload: body, ErrorType: res.ErrorType, LogTail: res.LogTail, LogTruncatedBytes: res.LogTruncatedBytes,
		Start: kind, HandlerStartUnixNs: res.HandlerStartUnixNs, DurationNs: res.DurationNs,
		InitDurationNs: initNs, Usage: usage, PreloadTag: tag, Timing: timing,
	}, nil
}

func mapStatus(s string) (dispatchpb.Status, error) {
	switch s {
	case initproto.StatusOK:
		return dispatchpb.Status_STATUS_OK, nil
	case initproto.StatusFunctionError:
		return dispatchpb.Status_STATUS_FUNCTION_ERROR, nil
	case initproto.StatusTimeout:
		return dispatchpb.Status_STATUS_TIMEOUT, nil
	case initproto.StatusCrashed:
		return dispatchpb.Status_STATUS_CRASHED, nil
	}
	return 0, status.Errorf(codes.Internal, "ember-init returned unknown status %q", s)
}

// startContainer delivers the code (once per instance and digest), creates
// the container's cgroup and starts it. It stops a container of the same
// version with older settings, and evicts the least recently used
// containers beyond MaxContainersPerInstance. Caller holds in.op.
func (a *Agent) startContainer(ctx context.Context, log zerolog.Logger, in *instance, client *initClient,
	req *dispatchpb.DispatchRequest, vk, key, digestHex string) (*container, error) {
	egress := req.GetNetwork() == NetworkEgress && a.egressAllowed(in)
	if egress && a.deps.Network == nil {
		return nil, status.Error(codes.Unimplemented, "this agent has no network for containers: egress is off")
	}
	t0 := time.Now()
	// The package's delivery and the container's cgroups do not depend on
	// each other: they are made at once (about 1 and 1.4 ms of a pool hit
	// here). The start waits for the delivery (it holds in.op, which
	// guards in.codes) whatever happens.
	var tCode time.Time
	delivered := make(chan error, 1)
	go func() {
		err := a.deliverCode(ctx, in, req.GetCodeDigest(), digestHex)
		tCode = time.Now()
		delivered <- err
	}()
	mem := dispatchMB(in, req)
	a.mu.Lock()
	a.seq++
	id := key[:12] + "-" + strconv.FormatUint(a.seq, 10)
	a.mu.Unlock()
	vcpu := containerVCPU(in, mem)
	cg, err := a.deps.Cgroups.Create(in.cgroupPath, id, in.hostUID, CgroupLimits{
		MemoryBytes: mem << 20, CPUShares: a.cfg.cpuShares(mem), PidsLimit: a.cfg.ContainerPidsLimit,
		VCPU: vcpu,
	})
	if err != nil {
		if derr := <-delivered; derr != nil {
			log.Warn().Err(derr).Msg("deliver code (the container's cgroup failed too)")
		}
		return nil, status.Errorf(codes.Internal, "container cgroup: %v", err)
	}
	meter := a.attachMeter(log, cg) // accounting: before the process starts
	tCgroup := time.Now()
	undo := func() {
		closeMeter(log, meter)
		if rerr := cg.Remove(); rerr != nil {
			log.Warn().Err(rerr).Msg("remove container cgroup")
		}
		cg.CloseFDs()
	}
	if err := <-delivered; err != nil {
		undo()
		if errors.Is(err, codefetch.ErrInvalid) || errors.Is(err, codefetch.ErrTooLarge) || errors.Is(err, codefetch.ErrDigestMismatch) {
			// The package itself cannot run: a function failure, retried and
			// dead-lettered by policy, not a platform failure retried forever.
			return nil, &packageError{err: err}
		}
		return nil, status.Errorf(codes.Aborted, "deliver code %s: %v", req.GetCodeDigest(), err)
	}
	state, err := a.attachState(in, req)
	if err != nil {
		undo()
		return nil, err
	}
	tReady := time.Now()
	boosted := a.startBoost(log, in, client, id, cg, vcpu)
	fds, names := cg.FDs()
	var spare *spareNetns
	if egress {
		spare = a.takeSpare(in)
	}
	sc := initproto.StartContainer{
		ContainerID: id, CodeDir: digestHex, Handler: req.GetHandler(),
		FunctionName: req.GetFunction(), Version: req.GetVersion(),
		MemoryMB: mem, TimeoutMs: req.GetTimeoutMs(), Env: req.GetEnv(), FDNames: names,
		LogGroup:  "/aws/lambda/" + req.GetFunction(),
		LogStream: time.Now().UTC().Format("2006/01/02") + "/[" + req.GetVersion() + "]" + in.id,
		// With egress, the process starts on the first Invoke, once its
		// network namespace (sent back in Started) is attached; in one set
		// aside and attached already, at once.
		DeferSpawn:  egress && spare == nil,
		State:       state,
		ReportReady: boosted,
	}
	if spare != nil {
		sc.Netns = spare.id
	}
	started, netnsFD, err := client.start(ctx, sc, fds)
	cg.CloseFDs()
	if err == nil && started.Error != "" {
		err = status.Errorf(codes.Internal, "start container: %s", started.Error)
	}
	tStart := time.Now()
	netID := ""
	switch {
	case err != nil:
		a.dropSpare(spare, client) // ember-init's copy too, unless its failed start closed it
	case spare != nil: // the same namespace: the spare's fd and attachment
		if netnsFD >= 0 {
			_ = unix.Close(netnsFD)
		}
		netnsFD, netID = spare.fd, spare.netID
	case egress:
		if netnsFD < 0 {
			err = status.Error(codes.Internal, "start container: ember-init sent no network namespace")
		} else {
			netID = attachmentID(in.id, id)
			var at network.Attachment
			at, err = a.deps.Network.Attach(ctx, netID, netnsPath(netnsFD))
			if err != nil {
				err = status.Errorf(codes.Internal, "container network: %v", err)
			} else {
				log.Debug().Str("container", id).Stringer("addr", at.Addr).Msg("container attached to the network")
			}
		}
	}
	if err != nil {
		if netnsFD >= 0 {
			if started.Error == "" {
				_ = client.stop(ctx, id, 0)
			}
			_ = unix.Close(netnsFD)
		}
		a.endBoost(in, id)
		closeMeter(log, meter)
		if rerr := cg.Remove(); rerr != nil {
			log.Warn().Err(rerr).Msg("remove container cgroup")
		}
		return nil, err
	}
	if !egress && netnsFD >= 0 {
		_ = unix.Close(netnsFD)
		netnsFD = -1
	}
	tNet := time.Now()
	c := &container{id: id, key: key, versionKey: vk, cg: cg, lastUsed: time.Now(), meter: meter, memoryMB: mem,
		netnsFD: netnsFD, netID: netID}
	a.mu.Lock()
	var superseded []*container
	for k, o := range in.containers {
		if o.versionKey == vk {
			superseded = append(superseded, o)
			delete(in.containers, k) // no dispatch uses it from now on
		}
	}
	in.containers[key] = c
	victims := lruVictims(in.containers, a.cfg.MaxContainersPerInstance, key)
	for _, v := range victims {
		delete(in.containers, v.key)
	}
	// The containers this one replaces stop beside this dispatch, off its
	// path (a stop waits for the process to exit, up to StopGrace), when
	// the instance's memory holds them all meanwhile; else before it runs.
	var total int64
	for _, o := range in.containers {
		total += o.memoryMB
	}
	for _, o := range append(superseded, victims...) {
		total += o.memoryMB
	}
	aside := total <= in.memoryMB
	// One still running an invocation (this dispatch runs beside it) stops
	// when that ends.
	idle := superseded[:0]
	for _, o := range superseded {
		if o.inUse > 0 {
			o.retire, o.retireHot = "superseded by new code or settings", false
			continue
		}
		idle = append(idle, o)
	}
	superseded = idle
	a.mu.Unlock()
	if aside {
		a.stopAside(in, superseded, false, "superseded by new code or settings")
		a.stopAside(in, victims, true, "evicted: too many containers on the instance")
	} else {
		for _, o := range superseded {
			a.stopContainer(ctx, in, o, false, "superseded by new code or settings")
		}
		for _, v := range victims {
			a.stopContainer(ctx, in, v, true, "evicted: too many containers on the instance")
		}
	}
	if egress { // a namespace set aside for the next one, off this start
		time.AfterFunc(afterStartDelay, func() { a.kickSpare(in, client) })
	}
	log.Info().Str("container", id).Int("pid", started.Pid).Int("uid", started.UID).Bool("egress", egress).
		Bool("spare_netns", spare != nil).Dur("code", tCode.Sub(t0)).Dur("cgroup", tCgroup.Sub(t0)).Dur("prepared", tReady.Sub(t0)).
		Dur("init_start", tStart.Sub(tReady)).
		Dur("network", tNet.Sub(tStart)).Dur("stop_others", time.Since(tNet)).Msg("container started")
	return c, nil
}

// deliverCode puts the package's files at <instance>/code/<hex>: hard
// links into the host's one extracted tree of the package (made the first
// time any instance of the host needs it).
func (a *Agent) deliverCode(ctx context.Context, in *instance, digest, digestHex string) error {
	if in.codes[digestHex] {
		return nil
	}
	dest := filepath.Join(in.codeDir(), digestHex)
	if _, err := os.Stat(dest); err != nil {
		if err := a.trees.Link(ctx, digest, dest); err != nil {
			return err
		}
	}
	in.codes[digestHex] = true
	return nil
}

// Network modes of a function (DispatchRequest.network).
const (
	// NetworkNone: the container's own loopback only (the default of the
	// protocol, the safe zero value).
	NetworkNone = "none"
	// NetworkEgress: the outside world through the agent's network.
	NetworkEgress = "egress"
)

// attachmentID names container id's network attachment on instance: what
// a restarted agent derives for a container its record does not name.
func attachmentID(instance, id string) string { return instance + "-" + id }

// netnsPath names an fd of this process for the CNI plugins, which run as
// other processes.
func netnsPath(fd int) string { return fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), fd) }

// detachNetwork releases c's network attachment, if any.
func (a *Agent) detachNetwork(ctx context.Context, c *container) {
	if c.netnsFD < 0 {
		return
	}
	if a.deps.Network != nil {
		if err := a.deps.Network.Detach(ctx, c.netID, netnsPath(c.netnsFD)); err != nil {
			a.log.Warn().Err(err).Str("container", c.id).Msg("detach the container's network")
		}
	}
	_ = unix.Close(c.netnsFD)
	c.netnsFD = -1
}

// packageError is a function package that cannot be delivered (invalid,
// too large, or not matching its digest): the function's failure.
type packageError struct{ err error }

func (e *packageError) Error() string { return e.err.Error() }
func (e *packageError) Unwrap() error { return e.err }

// document is the Lambda-style error body for the invocation's result.
func (e *packageError) document() []byte {
	b, _ := json.Marshal(map[string]string{"errorType": "Runtime.InvalidPackage", "errorMessage": e.err.Error()})
	return b
}

// attachState attaches the tenant's resources the request names to the
// instance (once each) and returns them as ember-init binds them.
func (a *Agent) attachState(in *instance, req *dispatchpb.DispatchRequest) ([]initproto.StateMount, error) {
	var out []initproto.StateMount
	if len(req.GetState()) > 0 { // before the first mount: one may stay if a later one fails
		a.mu.Lock()
		in.hasState = true
		a.mu.Unlock()
	}
	for _, m := range req.GetState() {
		if a.deps.State == nil {
			return nil, status.Errorf(codes.Unimplemented, "agent %s keeps no state resources (state %s)", a.cfg.AgentID, m.GetName())
		}
		if err := a.deps.State.Attach(req.GetTenant(), m.GetName(), m.GetSizeMb(), in.stateDir()); err != nil {
			return nil, status.Errorf(codes.Internal, "attach state %s: %v", m.GetName(), err)
		}
		out = append(out, initproto.StateMount{Dir: m.GetName(), Path: m.GetPath()})
	}
	return out, nil
}

// preload makes sure container c's process runs (a container connected to
// a network is created without one), so that the next invocation is hot.
func (a *Agent) preload(ctx context.Context, log zerolog.Logger, client *initClient, c *container, kind dispatchpb.StartKind, deliver time.Duration, tag string) (*dispatchpb.DispatchResponse, error) {
	t0 := time.Now()
	started, _, err := client.start(ctx, initproto.StartContainer{ContainerID: c.id, Preload: true}, nil)
	if err == nil && started.Error != "" {
		err = status.Errorf(codes.Internal, "start the container's process: %s", started.Error)
	}
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	c.lastUsed = time.Now()
	if kind != dispatchpb.StartKind_START_KIND_HOT { // this pre-load started it
		c.preloadTag = tag
	}
	a.mu.Unlock()
	log.Info().Stringer("start", kind).Dur("deliver", deliver).Dur("spawn", time.Since(t0)).Msg("version pre-loaded")
	return &dispatchpb.DispatchResponse{Status: dispatchpb.Status_STATUS_OK, Start: kind,
		InitDurationNs: (deliver + time.Since(t0)).Nanoseconds()}, nil
}
