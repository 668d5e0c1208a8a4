package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/ember-run/ember/engine/api/wire"
	"github.com/ember-run/ember/engine/invoke"
	"github.com/ember-run/ember/engine/pool"
	"github.com/ember-run/ember/engine/registry"
)

func functionJSON(f registry.Function) wire.Function {
	v := f.Versions
	if v == nil {
		v = []string{}
	}
	return wire.Function{Tenant: f.Tenant, Name: f.Name, Handler: f.Handler, Runtime: f.Runtime,
		MemoryMB: f.MemoryMB, TimeoutMs: f.Timeout.Milliseconds(), Env: f.Env, Network: f.Network, SubPool: f.SubPool, State: stateJSON(f.State), LogService: f.LogService, CodeDigest: f.CodeDigest,
		CodeSize: f.CodeSize, ConfigHash: f.LatestConfigHash, Versions: v, Created: f.Created, Updated: f.Updated}
}

func versionJSON(v registry.Version) wire.Version {
	return wire.Version{Tenant: v.Tenant, Function: v.Function, Version: v.Version, Handler: v.Handler,
		Runtime: v.Runtime, MemoryMB: v.MemoryMB, TimeoutMs: v.Timeout.Milliseconds(), Env: v.Env, Network: v.Network, SubPool: v.SubPool, State: stateJSON(v.State),
		CodeDigest: v.CodeDigest, CodeSize: v.CodeSize, ConfigHash: v.ConfigHash, Created: v.Created}
}

// putFunction: multipart/form-data with a "config" part (wire.FunctionConfig
// JSON) and a "code" part (the zip, optional on update).
func (s *Server) putFunction(w http.ResponseWriter, r *http.Request, tenant string) {
	name := r.PathValue("name")
	if err := registry.ValidName("function", name); err != nil {
		s.fail(w, r, err)
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "multipart/form-data" {
		s.fail(w, r, invalid("want multipart/form-data with parts config and code, got %q", mt))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, s.deps.Code.Limits().MaxZipBytes+maxConfigBytes+64<<10)
	mr, err := r.MultipartReader()
	if err != nil {
		s.fail(w, r, invalid("multipart body: %v", err))
		return
	}
	var cfg wire.FunctionConfig
	var haveCfg, haveCode bool
	var digest string
	var size int64
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			s.fail(w, r, wrapBody(err, "multipart body"))
			return
		}
		switch part.FormName() {
		case "config":
			if haveCfg {
				s.fail(w, r, invalid("config part given twice"))
				return
			}
			dec := json.NewDecoder(io.LimitReader(part, maxConfigBytes))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&cfg); err != nil {
				s.fail(w, r, wrapBody(err, "config part"))
				return
			}
			haveCfg = true
		case "code":
			if haveCode {
				s.fail(w, r, invalid("code part given twice"))
				return
			}
			pkg, err := s.deps.Code.Put(r.Context(), part)
			if err != nil {
				s.fail(w, r, err)
				return
			}
			if s.deps.Replicas != nil {
				if err := s.deps.Replicas.Announce(r.Context(), pkg.Digest); err != nil {
					s.fail(w, r, fmt.Errorf("%w: %w", registry.ErrUnavailable, err))
					return
				}
			}
			digest, size, haveCode = pkg.Digest, pkg.Size, true
		default:
			s.fail(w, r, invalid("unknown part %q (want config and code)", part.FormName()))
			return
		}
		_ = part.Close()
	}
	f, err := s.deps.Registry.GetFunction(r.Context(), tenant, name)
	switch {
	case registry.IsNotFound(err):
		if !haveCode {
			s.fail(w, r, invalid("function %q does not exist: a code part is required to create it", name))
			return
		}
		f = registry.Function{Tenant: tenant, Name: name}
	case err != nil:
		s.fail(w, r, err)
		return
	}
	if haveCode {
		f.CodeDigest, f.CodeSize = digest, size
	}
	if cfg.Handler != "" {
		f.Handler = cfg.Handler
	}
	if cfg.Runtime != "" {
		f.Runtime = cfg.Runtime
	}
	if cfg.MemoryMB != 0 {
		f.MemoryMB = cfg.MemoryMB
	}
	if cfg.TimeoutMs != 0 {
		if cfg.TimeoutMs < 0 {
			s.fail(w, r, invalid("timeout_ms must be positive"))
			return
		}
		f.Timeout = time.Duration(cfg.TimeoutMs) * time.Millisecond
	}
	if cfg.Env != nil {
		f.Env = cfg.Env
	}
	if cfg.Network != "" {
		f.Network = cfg.Network
	}
	if cfg.State != nil {
		f.State = nil
		for _, m := range *cfg.State {
			if m.SizeMB == 0 {
				m.SizeMB = registry.DefaultStateMB
			}
			f.State = append(f.State, registry.StateMount{Name: m.Name, Path: m.Path, SizeMB: m.SizeMB})
		}
	}
	switch cfg.SubPool {
	case "":
	case "-":
		f.SubPool = ""
	default:
		f.SubPool = cfg.SubPool
	}
	switch cfg.LogService {
	case "":
	case "-":
		f.LogService = ""
	default:
		f.LogService = cfg.LogService
	}
	prevHash := f.LatestConfigHash
	out, err := s.deps.Registry.PutFunction(r.Context(), f)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info().Str("tenant", tenant).Str("function", name).Str("digest", out.CodeDigest).Msg("function deployed")
	fj := functionJSON(out)
	if prevHash != "" && prevHash != out.LatestConfigHash && !cfg.SkipPreload {
		fj.Preloaded = s.preload(r, tenant, name, registry.Latest)
	}
	writeJSON(w, http.StatusOK, fj)
}

// preload loads qualifier of the function on the idle instances that ran
// its $LATEST until now, so that the first invocation after a deploy or a
// publish is hot; best effort, bounded by preloadTimeout.
func (s *Server) preload(r *http.Request, tenant, name, qualifier string) int {
	if s.deps.Preloader == nil {
		return 0
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), preloadTimeout)
	defer cancel()
	n, err := s.deps.Preloader.Preload(ctx, tenant, name, qualifier, registry.Latest)
	if err != nil {
		s.log.Warn().Err(err).Str("tenant", tenant).Str("function", name).Str("qualifier", qualifier).Msg("pre-load")
	}
	return n
}

// wrapBody classifies a body read error: too large stays *http.MaxBytesError
// (413), anything else is the client's malformed request (400).
func wrapBody(err error, what string) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return fmt.Errorf("%s: %w", what, err)
	}
	return invalid("%s: %v", what, err)
}

func (s *Server) listFunctions(w http.ResponseWriter, r *http.Request, tenant string) {
	fs, err := s.deps.Registry.ListFunctions(r.Context(), tenant)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := wire.Functions{Functions: make([]wire.Function, 0, len(fs))}
	for _, f := range fs {
		out.Functions = append(out.Functions, functionJSON(f))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getFunction(w http.ResponseWriter, r *http.Request, tenant string) {
	f, err := s.deps.Registry.GetFunction(r.Context(), tenant, r.PathValue("name"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, functionJSON(f))
}

// deleteFunction removes the function, then its containers everywhere: its
// versions leave the pool's hot sets and agents stop their containers.
func (s *Server) deleteFunction(w http.ResponseWriter, r *http.Request, tenant string) {
	name := r.PathValue("name")
	f, err := s.deps.Registry.GetFunction(r.Context(), tenant, name)
	if registry.IsNotFound(err) {
		w.WriteHeader(http.StatusNoContent) // deleting a missing function is success
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.deps.Registry.DeleteFunction(r.Context(), tenant, name); err != nil {
		s.fail(w, r, err)
		return
	}
	if s.deps.Pool != nil {
		vks := []string{pool.VersionKey(tenant, name, registry.Latest)}
		for _, v := range f.Versions {
			vks = append(vks, pool.VersionKey(tenant, name, v))
		}
		if err := s.deps.Pool.RetireFunction(r.Context(), tenant, name, vks); err != nil {
			// The function is gone: its containers idle out by keep-alive.
			s.log.Warn().Err(err).Str("tenant", tenant).Str("function", name).Msg("retire the function's containers")
		}
	}
	s.log.Info().Str("tenant", tenant).Str("function", name).Msg("function deleted")
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) publish(w http.ResponseWriter, r *http.Request, tenant string) {
	v, err := s.deps.Registry.PublishVersion(r.Context(), tenant, r.PathValue("name"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	vj := versionJSON(v)
	vj.Preloaded = s.preload(r, tenant, v.Function, v.Version)
	writeJSON(w, http.StatusOK, vj)
}

// invoke runs the function synchronously. The body is the payload; the
// response body is the function's response (or its error document) and the
// outcome is in the X-Ember-* headers.
func (s *Server) invoke(w http.ResponseWriter, r *http.Request, tenant string) {
	name := r.PathValue("name")
	if err := registry.ValidName("function", name); err != nil {
		s.fail(w, r, err)
		return
	}
	q := r.URL.Query().Get("qualifier")
	if _, err := registry.NormalizeQualifier(q); err != nil {
		s.fail(w, r, err)
		return
	}
	switch it := r.Header.Get(wire.HeaderInvocationType); it {
	case "Event":
		s.invokeAsync(w, r, tenant, name, q)
		return
	case "", "RequestResponse":
		if r.Header.Get(wire.HeaderNeededBy) != "" {
			s.fail(w, r, invalid("%s needs %s: Event (a deferred invocation is asynchronous)", wire.HeaderNeededBy, wire.HeaderInvocationType))
			return
		}
	default:
		s.fail(w, r, invalid("%s %q: want Event or RequestResponse", wire.HeaderInvocationType, it))
		return
	}
	if s.deps.Invoker == nil {
		s.fail(w, r, fmt.Errorf("no invoker configured: %w", registry.ErrUnavailable))
		return
	}
	payload, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxPayloadBytes))
	if err != nil {
		s.fail(w, r, wrapBody(err, "payload"))
		return
	}
	// A client that disconnects once the invocation has an instance does
	// not stop it (RunToEnd): that would kill the function and destroy its
	// warm instance.
	inv := &invoke.Invocation{ID: invoke.NewID(), Tenant: tenant, Function: name, Qualifier: q,
		Payload: payload, Source: "api", TraceID: traceID(r), RunToEnd: true, LogService: r.Header.Get(wire.HeaderLogService)}
	res, err := s.deps.Invoker.Invoke(r.Context(), inv)
	if err != nil {
		s.failWith(w, r, fmt.Errorf("invoke %s: %w", name, err), http.StatusBadGateway)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set(wire.HeaderInvocationID, inv.ID)
	h.Set(wire.HeaderStatus, res.Status.String())
	h.Set(wire.HeaderVersion, res.Version)
	h.Set(wire.HeaderStart, res.Start.String())
	h.Set(wire.HeaderDurationMs, strconv.FormatFloat(float64(res.Duration.Microseconds())/1000, 'f', 3, 64))
	if res.ErrorType != "" {
		h.Set(wire.HeaderErrorType, res.ErrorType)
	}
	if res.LogTruncatedBytes > 0 {
		h.Set(wire.HeaderLogTruncated, strconv.FormatInt(res.LogTruncatedBytes, 10))
	}
	if tail := res.LogTail; len(tail) > 0 {
		if len(tail) > maxLogTailHeader {
			tail = tail[len(tail)-maxLogTailHeader:]
		}
		h.Set(wire.HeaderLogTail, base64.StdEncoding.EncodeToString(tail))
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(res.Payload)
}

func stateJSON(ms []registry.StateMount) []wire.StateMount {
	var out []wire.StateMount
	for _, m := range ms {
		out = append(out, wire.StateMount{Name: m.Name, Path: m.Path, SizeMB: m.SizeMB})
	}
	return out
}

// traceID is the caller's trace header: X-Ember-Trace-Id, or X-Amzn-Trace-Id
// (what a function's tracing passes on; it names the calling function, see
// engine/predict).
func traceID(r *http.Request) string {
	if t := r.Header.Get("X-Ember-Trace-Id"); t != "" {
		return t
	}
	return r.Header.Get("X-Amzn-Trace-Id")
}
