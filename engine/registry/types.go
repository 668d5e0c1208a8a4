package registry

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ember-run/ember/consumers/settings"
	"github.com/ember-run/ember/engine/pool"
)

// Limits and defaults of functions and bindings.
const (
	// RuntimeProvided is the only runtime: a zip with an executable bootstrap.
	RuntimeProvided  = "provided"
	DefaultHandler   = "bootstrap"
	DefaultMemoryMB  = 128
	DefaultTimeout   = 3 * time.Second
	MinTimeout       = time.Second
	MaxTimeout       = 900 * time.Second
	MaxEnvBytes      = 4096
	MaxHandlerLength = 128
	Latest           = "$LATEST"

	// NetworkEgress: the function reaches the outside world through NAT
	// (never the host's services, private networks or metadata
	// addresses). The default, as on Lambda.
	NetworkEgress = "egress"
	// NetworkNone: the function has its own loopback only.
	NetworkNone = "none"

	GroupIDPrefix    = "ember."
	DefaultDLQSuffix = ".dlq"
)

// Function is a function's $LATEST configuration plus its published versions.
type Function struct {
	Tenant, Name string
	// Handler is passed to the runtime as _HANDLER. Default: "bootstrap".
	Handler string
	// Runtime is "provided" (the default and only value).
	Runtime string
	// MemoryMB is 128..10240. The function runs in a sub-pool of its
	// tenant that holds it, else in the smallest fixed class that does (up
	// to 1024 MB; see engine/placement). Default: 128.
	MemoryMB int64
	// SubPool, when set, is the tenant's sub-pool the function must run in.
	SubPool string
	// State are resources of the tenant the function's containers see
	// read-write, shared by every instance on a host.
	State []StateMount
	// Timeout is 1s..900s. Default: 3s.
	Timeout time.Duration
	Env     map[string]string
	// Network is NetworkEgress (default) or NetworkNone.
	Network string
	// LogService names the tenant's logging service the function's output
	// goes to: "" for the tenant's default, LogServiceNone for none. Not
	// part of ConfigHash: changing it starts no new container.
	LogService string `json:",omitempty"`
	// CodeDigest is the package's "sha256:<hex>". Required.
	CodeDigest string
	CodeSize   int64
	// LatestConfigHash is ConfigHash of $LATEST.
	LatestConfigHash string
	Created, Updated time.Time
	// Versions are the published version numbers, oldest first.
	Versions []string
}

// Version is an immutable snapshot of what runs.
type Version struct {
	Tenant, Function string
	// Version is "$LATEST" or "1", "2", ...
	Version    string
	CodeDigest string
	CodeSize   int64
	Handler    string
	Runtime    string
	MemoryMB   int64
	Timeout    time.Duration
	Env        map[string]string
	Network    string
	SubPool    string
	State      []StateMount
	// LogService is the function's logging service when the version was
	// made (see Function.LogService).
	LogService string `json:",omitempty"`
	// ConfigHash is the sha256 hex over digest, handler, runtime, network,
	// memory, timeout and the sorted env: the identity of what runs.
	ConfigHash string
	Created    time.Time
}

// Binding connects a Kafka topic to a function. Zero optional fields mean
// the documented defaults, filled in by PutBinding.
type Binding struct {
	// ID names the binding within its tenant.
	ID       string
	Tenant   string
	Function string
	// Qualifier is "" ($LATEST), a published version number or an alias.
	Qualifier string
	// Topic is the Kafka topic read: one the tenant owns or was granted for
	// consuming (PutBinding resolves a short name in the tenant's namespace).
	Topic string
	// GroupID is the consumer group, always GroupID(Tenant, ID): Ember's,
	// so that a binding can never join another application's group.
	GroupID string
	// Settings are batching, ordering, starting position, error controls
	// and filters: one definition, with their defaults and limits, in
	// package settings.
	settings.Settings
	// ResultTopic, if set, receives successful responses. It must be a
	// topic the tenant may produce to, or lie in its namespace.
	ResultTopic string
	// DLQTopic receives records that could not be handled; the same rule as
	// ResultTopic. Default: DefaultDLQ(Tenant, Topic).
	DLQTopic string
	// Rewind, when set, is the newest rewind asked for (RewindBinding).
	Rewind *settings.Rewind `json:",omitempty"`
	// Enabled: consumers run only enabled bindings. Stored as given (the
	// API defaults it to true).
	Enabled bool
	Created time.Time
}

// ValidName checks a tenant, function or binding name.
func ValidName(kind, name string) error {
	if !validName(name) {
		return fmt.Errorf("%s name %q: want 1 to 64 of A-Z a-z 0-9 _ -: %w", kind, name, ErrInvalid)
	}
	return nil
}

// validName reports whether name is 1 to 64 of A-Z a-z 0-9 _ - (a loop,
// not a regular expression: every Resolve checks two names).
func validName(name string) bool {
	if len(name) < 1 || len(name) > 64 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

var topicRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,249}$`)

// ValidTopic checks a Kafka topic name: 1..249 of [A-Za-z0-9._-], not "." or "..".
func ValidTopic(t string) error {
	if !topicRE.MatchString(t) || t == "." || t == ".." {
		return fmt.Errorf("topic %q: want 1 to 249 of A-Z a-z 0-9 . _ - (not \".\" or \"..\"): %w", t, ErrInvalid)
	}
	return nil
}

var envKeyRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*$`)

// reservedEnv are set by the runtime (as in Lambda) and cannot be overridden.
var reservedEnv = []string{"_HANDLER", "_X_AMZN_TRACE_ID", "AWS_REGION", "AWS_EXECUTION_ENV",
	"AWS_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
	"LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR"}

func validEnv(env map[string]string) error {
	size := 0
	for k, v := range env {
		if !envKeyRE.MatchString(k) {
			return fmt.Errorf("env key %q: want a letter then letters, digits or _: %w", k, ErrInvalid)
		}
		if slices.Contains(reservedEnv, k) || strings.HasPrefix(k, "AWS_LAMBDA_") {
			return fmt.Errorf("env key %q is reserved by the runtime: %w", k, ErrInvalid)
		}
		if strings.ContainsRune(v, 0) {
			return fmt.Errorf("env %q: value contains NUL: %w", k, ErrInvalid)
		}
		size += len(k) + len(v)
	}
	if size > MaxEnvBytes {
		return fmt.Errorf("env is %d bytes, over the %d byte limit: %w", size, MaxEnvBytes, ErrInvalid)
	}
	return nil
}

// validDigest checks "sha256:<64 lowercase hex>".
func validDigest(d string) error {
	h, ok := strings.CutPrefix(d, "sha256:")
	if !ok || len(h) != 64 || strings.Trim(h, "0123456789abcdef") != "" {
		return fmt.Errorf("code digest %q: want sha256:<64 lowercase hex digits>: %w", d, ErrInvalid)
	}
	return nil
}

// withDefaults fills f's defaulted fields.
func (f Function) withDefaults() Function {
	if f.Handler == "" {
		f.Handler = DefaultHandler
	}
	if f.Runtime == "" {
		f.Runtime = RuntimeProvided
	}
	if f.MemoryMB == 0 {
		f.MemoryMB = DefaultMemoryMB
	}
	if f.Timeout == 0 {
		f.Timeout = DefaultTimeout
	}
	if f.Network == "" {
		f.Network = NetworkEgress
	}
	return f
}

// Validate checks f after defaults are applied.
func (f Function) Validate() error {
	f = f.withDefaults()
	if err := ValidName("tenant", f.Tenant); err != nil {
		return err
	}
	if err := ValidName("function", f.Name); err != nil {
		return err
	}
	minMem, maxMem := pool.StandardClasses[0], int64(pool.MaxSubPoolMemoryMB)
	switch {
	case f.Runtime != RuntimeProvided:
		return fmt.Errorf("function %q: runtime %q: only %q is supported: %w", f.Name, f.Runtime, RuntimeProvided, ErrInvalid)
	case len(f.Handler) > MaxHandlerLength || strings.ContainsAny(f.Handler, "\x00\n"):
		return fmt.Errorf("function %q: handler must be at most %d bytes on one line: %w", f.Name, MaxHandlerLength, ErrInvalid)
	case f.MemoryMB < minMem || f.MemoryMB > maxMem:
		return fmt.Errorf("function %q: memory %d MB: want %d..%d: %w", f.Name, f.MemoryMB, minMem, maxMem, ErrInvalid)
	case f.Timeout < MinTimeout || f.Timeout > MaxTimeout:
		return fmt.Errorf("function %q: timeout %v: want %v..%v: %w", f.Name, f.Timeout, MinTimeout, MaxTimeout, ErrInvalid)
	case f.Network != NetworkEgress && f.Network != NetworkNone:
		return fmt.Errorf("function %q: network %q: want %s or %s: %w", f.Name, f.Network, NetworkEgress, NetworkNone, ErrInvalid)
	case f.CodeDigest == "":
		return fmt.Errorf("function %q: code digest is required: %w", f.Name, ErrInvalid)
	case f.SubPool != "" && !pool.ValidSubPoolName(f.SubPool):
		return fmt.Errorf("function %q: sub-pool name %q: %w", f.Name, f.SubPool, ErrInvalid)
	}
	if err := validState(f.State); err != nil {
		return fmt.Errorf("function %q: %w", f.Name, err)
	}
	if err := validDigest(f.CodeDigest); err != nil {
		return fmt.Errorf("function %q: %w", f.Name, err)
	}
	if err := validEnv(f.Env); err != nil {
		return fmt.Errorf("function %q: %w", f.Name, err)
	}
	return nil
}

// latestVersion is f's $LATEST as a Version.
func (f Function) latestVersion() Version {
	return Version{Tenant: f.Tenant, Function: f.Name, Version: Latest, CodeDigest: f.CodeDigest,
		CodeSize: f.CodeSize, Handler: f.Handler, Runtime: f.Runtime, MemoryMB: f.MemoryMB,
		Timeout: f.Timeout, Env: f.Env, Network: f.Network, SubPool: f.SubPool, State: f.State, LogService: f.LogService,
		ConfigHash: f.LatestConfigHash, Created: f.Updated}
}

// ConfigHash is the identity of what runs: sha256 hex over the digest,
// handler, runtime, memory, timeout, the env sorted by key, the network
// mode and the sub-pool.
func (f Function) ConfigHash() string {
	h := configHash(f.CodeDigest, f.Handler, f.Runtime, f.MemoryMB, f.Timeout, f.Env, f.Network, f.SubPool)
	if len(f.State) == 0 { // older records had none: keep their hash
		return h
	}
	sum := sha256.New()
	sum.Write([]byte(h))
	for _, m := range f.State {
		fmt.Fprintf(sum, "|%d:%s|%d:%s|%d", len(m.Name), m.Name, len(m.Path), m.Path, m.SizeMB)
	}
	return hex.EncodeToString(sum.Sum(nil))
}

func configHash(digest, handler, runtime string, memoryMB int64, timeout time.Duration, env map[string]string, network, subpool string) string {
	h := sha256.New()
	field := func(s string) { // length-prefixed, so fields cannot run together
		h.Write([]byte(strconv.Itoa(len(s))))
		h.Write([]byte{':'})
		h.Write([]byte(s))
	}
	field(digest)
	field(handler)
	field(runtime)
	field(strconv.FormatInt(memoryMB, 10))
	field(strconv.FormatInt(int64(timeout), 10))
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		field(k)
		field(env[k])
	}
	if network != NetworkEgress { // older records hashed no network: egress keeps their hash
		field("network=" + network)
	}
	if subpool != "" { // likewise: no sub-pool keeps older hashes
		field("subpool=" + subpool)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// NormalizeQualifier maps "" to "$LATEST" and checks the rest is a version
// number or an alias name.
func NormalizeQualifier(q string) (string, error) {
	switch {
	case q == "" || q == Latest:
		return Latest, nil
	case isVersionNumber(q) || ValidAliasName(q) == nil:
		return q, nil
	}
	return "", fmt.Errorf("qualifier %q: want $LATEST, a version number or an alias name: %w", q, ErrInvalid)
}

// isVersionNumber: 1, 2, ... without leading zeros.
func isVersionNumber(q string) bool {
	n, err := strconv.ParseUint(q, 10, 32)
	return err == nil && n != 0 && strconv.FormatUint(n, 10) == q
}

// Key names the binding across tenants: "<tenant>/<id>".
func (b Binding) Key() string { return b.Tenant + "/" + b.ID }

// GroupID is the consumer group of tenant's binding id.
func GroupID(tenant, id string) string { return GroupIDPrefix + tenant + "." + id }

// DefaultDLQ is the dead-letter topic of a binding of tenant reading topic:
// topic + ".dlq" in the tenant's namespace.
func DefaultDLQ(tenant, topic string) string { return TenantTopic(tenant, topic+DefaultDLQSuffix) }

// withDefaults fills b's defaulted fields.
func (b Binding) withDefaults() Binding {
	b.GroupID = GroupID(b.Tenant, b.ID)
	b.Settings = b.Settings.WithDefaults()
	if b.DLQTopic == "" && b.Topic != "" {
		b.DLQTopic = DefaultDLQ(b.Tenant, b.Topic)
	}
	return b
}

// Validate checks b after defaults are applied.
func (b Binding) Validate() error {
	b = b.withDefaults()
	bad := func(format string, args ...any) error {
		return fmt.Errorf("binding %q: %s: %w", b.ID, fmt.Sprintf(format, args...), ErrInvalid)
	}
	for _, n := range [][2]string{{"binding", b.ID}, {"tenant", b.Tenant}, {"function", b.Function}} {
		if err := ValidName(n[0], n[1]); err != nil {
			return err
		}
	}
	if _, err := NormalizeQualifier(b.Qualifier); err != nil {
		return fmt.Errorf("binding %q: %w", b.ID, err)
	}
	if err := ValidTopic(b.Topic); err != nil {
		return fmt.Errorf("binding %q: %w", b.ID, err)
	}
	if err := ValidTopic(b.DLQTopic); err != nil {
		return fmt.Errorf("binding %q: dead-letter %w", b.ID, err)
	}
	if b.ResultTopic != "" {
		if err := ValidTopic(b.ResultTopic); err != nil {
			return fmt.Errorf("binding %q: result %w", b.ID, err)
		}
	}
	if b.ResultTopic == b.Topic || b.DLQTopic == b.Topic {
		return bad("result and dead-letter topics must differ from the topic read (that would loop)")
	}
	if err := b.Settings.Validate(); err != nil {
		return bad("%v", err)
	}
	if b.Rewind != nil {
		if err := b.Rewind.Validate(); err != nil {
			return bad("%v", err)
		}
	}
	return nil
}
