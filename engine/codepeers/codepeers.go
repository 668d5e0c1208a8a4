package codepeers

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"golang.org/x/sync/singleflight"

	"github.com/ember-run/ember/engine/codestore"
)

// DefaultPrefix is the Redis key prefix: "<prefix><digest>" is the set of
// peer URLs of the replicas holding a package.
const DefaultPrefix = "{ember}:code:"

// Config configures Peers.
type Config struct {
	// Self is this replica's peer URL as others reach it
	// ("https://host:port"), announced for the packages it holds. Empty:
	// this replica serves no peers (it still fetches from them).
	Self string
	// Client fetches from peers: mutual TLS with this replica's
	// certificate. Required.
	Client *http.Client
	// Prefix of the Redis keys. Default: DefaultPrefix.
	Prefix string
	// Log receives fetches and failures. Default: disabled.
	Log zerolog.Logger
}

// Peers makes the packages of every replica reachable from this one.
type Peers struct {
	rdb    redis.UniversalClient
	store  *codestore.Store
	cfg    Config
	flight singleflight.Group
}

// New returns Peers over rdb and this replica's store.
func New(rdb redis.UniversalClient, store *codestore.Store, cfg Config) (*Peers, error) {
	if rdb == nil || store == nil || cfg.Client == nil {
		return nil, errors.New("codepeers: Redis, store and client are required")
	}
	if cfg.Self != "" && !strings.HasPrefix(cfg.Self, "https://") {
		return nil, fmt.Errorf("codepeers: peer URL %q: packages travel over mutual TLS only (https://)", cfg.Self)
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	cfg.Log = cfg.Log.With().Str("component", "codepeers").Logger()
	return &Peers{rdb: rdb, store: store, cfg: cfg}, nil
}

// Announce records that this replica holds digest and tells the others,
// which fetch it at once (Run): a package deployed through one replica is
// on every running one before a replica that holds it can fail.
func (p *Peers) Announce(ctx context.Context, digest string) error {
	if p.cfg.Self == "" {
		return nil
	}
	_, err := p.rdb.TxPipelined(ctx, func(pl redis.Pipeliner) error {
		pl.SAdd(ctx, p.cfg.Prefix+digest, p.cfg.Self)
		pl.SAdd(ctx, p.index(), digest)
		pl.Publish(ctx, p.channel(), digest)
		return nil
	})
	if err != nil {
		return fmt.Errorf("codepeers: announce %s: %w", digest, err)
	}
	return nil
}

func (p *Peers) channel() string { return p.cfg.Prefix + "announced" }

// index is the set of every digest ever announced.
func (p *Peers) index() string { return p.cfg.Prefix + "digests" }

// Run first fetches every announced package this replica lacks (a replica
// that starts late must not depend on the others staying up), then every
// package another replica announces, until ctx is done. A failed fetch is
// logged; the package is fetched again on first use.
func (p *Peers) Run(ctx context.Context) error {
	sub := p.rdb.Subscribe(ctx, p.channel())
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil { // subscribed: nothing announced from now on is missed
		return fmt.Errorf("codepeers: subscribe: %w", err)
	}
	ch := sub.Channel()
	all, err := p.rdb.SMembers(ctx, p.index()).Result()
	if err != nil && ctx.Err() == nil {
		p.cfg.Log.Warn().Err(err).Msg("list announced packages; they will be fetched on first use")
	}
	for _, d := range all {
		if err := p.Ensure(ctx, d); err != nil && ctx.Err() == nil {
			p.cfg.Log.Warn().Err(err).Str("digest", d).Msg("catching up on an announced package failed; it will be fetched on first use")
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-ch:
			if !ok {
				return nil
			}
			if err := p.Ensure(ctx, m.Payload); err != nil && ctx.Err() == nil {
				p.cfg.Log.Warn().Err(err).Str("digest", m.Payload).Msg("replicating an announced package failed; it will be fetched on first use")
			}
		}
	}
}

// AnnounceAll announces every package in the store: what a replica does
// when it starts (its address may be new, or Redis may have lost the sets).
func (p *Peers) AnnounceAll(ctx context.Context) error {
	ds, err := p.store.Digests()
	if err != nil {
		return err
	}
	for _, d := range ds {
		if err := p.Announce(ctx, d); err != nil {
			return err
		}
	}
	return nil
}

// Ensure makes digest present in this replica's store: when it is missing,
// it is fetched from a replica that announced it, checked against its
// digest (and validated as any package), stored and announced. Concurrent
// calls for one digest fetch once. It returns an error wrapping
// codestore.ErrNotFound when no reachable replica has it.
func (p *Peers) Ensure(ctx context.Context, digest string) error {
	if _, err := codestore.ParseDigest(digest); err != nil {
		return err
	}
	if ok, err := p.store.Has(digest); err != nil || ok {
		return err
	}
	_, err, _ := p.flight.Do(digest, func() (any, error) {
		if ok, err := p.store.Has(digest); err != nil || ok {
			return nil, err
		}
		return nil, p.fetch(context.WithoutCancel(ctx), digest)
	})
	return err
}

func (p *Peers) fetch(ctx context.Context, digest string) error {
	holders, err := p.rdb.SMembers(ctx, p.cfg.Prefix+digest).Result()
	if err != nil {
		return fmt.Errorf("codepeers: holders of %s: %w", digest, err)
	}
	rand.Shuffle(len(holders), func(i, j int) { holders[i], holders[j] = holders[j], holders[i] })
	var errs []error
	for _, h := range holders {
		if h == p.cfg.Self {
			continue // announced but gone (a lost disk): others may have it
		}
		if err := p.fetchFrom(ctx, h, digest); err != nil {
			p.cfg.Log.Warn().Err(err).Str("peer", h).Str("digest", digest).Msg("fetch from a replica failed")
			errs = append(errs, err)
			continue
		}
		p.cfg.Log.Info().Str("peer", h).Str("digest", digest).Msg("package fetched from a replica")
		return p.Announce(ctx, digest)
	}
	return fmt.Errorf("package %s: no replica could provide it (%d announced): %w: %w",
		digest, len(holders), codestore.ErrNotFound, errors.Join(errs...))
}

func (p *Peers) fetchFrom(ctx context.Context, peer, digest string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(peer, "/")+"/v1/code/"+digest, nil)
	if err != nil {
		return err
	}
	resp, err := p.cfg.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", req.URL, resp.Status)
	}
	pkg, err := p.store.Put(ctx, resp.Body)
	if err != nil {
		return err
	}
	if pkg.Digest != digest {
		// Put stored what it read under its own digest; it is not what
		// was asked for, and nothing refers to it.
		_ = p.store.Delete(pkg.Digest)
		return fmt.Errorf("%s answered %s for %s", peer, pkg.Digest, digest)
	}
	return nil
}
