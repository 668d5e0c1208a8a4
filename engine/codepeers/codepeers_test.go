package codepeers_test

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ember-run/ember/engine/codepeers"
	"github.com/ember-run/ember/engine/codestore"
	"github.com/ember-run/ember/internal/pki"
	"github.com/ember-run/ember/internal/testenv"
)

func pkg(t *testing.T, body string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	fh := &zip.FileHeader{Name: "bootstrap", Method: zip.Deflate}
	fh.SetMode(0o755)
	w, err := zw.CreateHeader(fh)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(w, "#!/bin/sh\necho "+body+"\n")
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// replica is one emberd's store behind a peer listener that takes only
// emberd certificates, as emberd's does.
type replica struct {
	store *codestore.Store
	peers *codepeers.Peers
	url   string
}

func newReplica(t *testing.T, ca *pki.Authority, rdbAddr string, serve func(http.ResponseWriter, *http.Request, *codestore.Store)) *replica {
	t.Helper()
	store, err := codestore.New(codestore.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue(pki.RoleEmberd, pki.RoleEmberd, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		serve(w, r, store)
	}))
	srv.TLS = pki.ServerConfig(cert, ca.Pool(), pki.RoleAgent, pki.RoleEmberd)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	rdb := redis.NewClient(&redis.Options{Addr: rdbAddr})
	t.Cleanup(func() { _ = rdb.Close() })
	p, err := codepeers.New(rdb, store, codepeers.Config{
		Self:   srv.URL,
		Client: &http.Client{Transport: &http.Transport{TLSClientConfig: pki.ClientConfig(cert, ca.Pool(), pki.RoleEmberd, "")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return &replica{store: store, peers: p, url: srv.URL}
}

// honest serves what the store holds.
func honest(w http.ResponseWriter, r *http.Request, s *codestore.Store) {
	rc, _, err := s.Open(r.URL.Path[len("/v1/code/"):])
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer rc.Close()
	_, _ = io.Copy(w, rc)
}

func TestEnsureFetchesFromAReplicaThatHasIt(t *testing.T) {
	ca, err := pki.NewAuthority()
	if err != nil {
		t.Fatal(err)
	}
	srv := testenv.StartRedis(t, false)
	a := newReplica(t, ca, srv.Addr, honest)
	b := newReplica(t, ca, srv.Addr, honest)
	ctx := t.Context()

	put, err := a.store.Put(ctx, bytes.NewReader(pkg(t, "one")))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.peers.Ensure(ctx, put.Digest); !errors.Is(err, codestore.ErrNotFound) {
		t.Fatalf("ensure of a package nobody announced: %v", err)
	}
	if err := a.peers.Announce(ctx, put.Digest); err != nil {
		t.Fatal(err)
	}
	if err := b.peers.Ensure(ctx, put.Digest); err != nil {
		t.Fatal(err)
	}
	if ok, _ := b.store.Has(put.Digest); !ok {
		t.Fatal("b does not hold the package after Ensure")
	}
	// b announced itself: with a gone, a third replica gets it from b.
	a.store.Delete(put.Digest)
	c := newReplica(t, ca, srv.Addr, honest)
	if err := c.peers.Ensure(ctx, put.Digest); err != nil {
		t.Fatalf("from b: %v", err)
	}

	// A replica that answers other bytes for a digest is not believed.
	liar := newReplica(t, ca, srv.Addr, func(w http.ResponseWriter, _ *http.Request, _ *codestore.Store) {
		_, _ = w.Write(pkg(t, "two"))
	})
	other, err := codestore.New(codestore.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	three, err := other.Put(ctx, bytes.NewReader(pkg(t, "three")))
	if err != nil {
		t.Fatal(err)
	}
	if err := liar.peers.Announce(ctx, three.Digest); err != nil {
		t.Fatal(err)
	}
	d := newReplica(t, ca, srv.Addr, honest)
	if err := d.peers.Ensure(ctx, three.Digest); !errors.Is(err, codestore.ErrNotFound) {
		t.Fatalf("ensure from a lying replica: %v", err)
	}
	if ds, _ := d.store.Digests(); len(ds) != 0 {
		t.Fatalf("the lie was kept: %v", ds)
	}
}

// Only emberd and agent certificates of the authority get packages.
func TestPeerListenerRefusesOtherCertificates(t *testing.T) {
	ca, err := pki.NewAuthority()
	if err != nil {
		t.Fatal(err)
	}
	srv := testenv.StartRedis(t, false)
	a := newReplica(t, ca, srv.Addr, honest)
	stranger, err := pki.NewAuthority()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := stranger.Issue(pki.RoleEmberd, pki.RoleEmberd, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: pki.ClientConfig(cert, ca.Pool(), pki.RoleEmberd, "")}}
	if resp, err := cl.Get(a.url + "/v1/code/sha256:" + string(bytes.Repeat([]byte("0"), 64))); err == nil {
		resp.Body.Close()
		t.Fatalf("a certificate of another authority was served: %s", resp.Status)
	}
}

// A running replica fetches what another announces, before anyone asks.
func TestRunReplicatesAnnouncedPackages(t *testing.T) {
	ca, err := pki.NewAuthority()
	if err != nil {
		t.Fatal(err)
	}
	srv := testenv.StartRedis(t, false)
	a := newReplica(t, ca, srv.Addr, honest)
	b := newReplica(t, ca, srv.Addr, honest)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- b.peers.Run(ctx) }()
	defer func() { cancel(); <-done }()
	put, err := a.store.Put(ctx, bytes.NewReader(pkg(t, "eager")))
	if err != nil {
		t.Fatal(err)
	}
	// Run subscribes asynchronously: announce until b has it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := a.peers.Announce(ctx, put.Digest); err != nil {
			t.Fatal(err)
		}
		if ok, _ := b.store.Has(put.Digest); ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("b never fetched the announced package")
		}
		time.Sleep(20 * time.Millisecond) // polling the other replica's store
	}
}

// TestRunCatchesUpOnStart: a replica that starts after a package was
// announced fetches it at once, while its holder is still up.
func TestRunCatchesUpOnStart(t *testing.T) {
	ca, err := pki.NewAuthority()
	if err != nil {
		t.Fatal(err)
	}
	srv := testenv.StartRedis(t, false)
	a := newReplica(t, ca, srv.Addr, honest)
	b := newReplica(t, ca, srv.Addr, honest)
	put, err := a.store.Put(t.Context(), bytes.NewReader(pkg(t, "early")))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.peers.Announce(t.Context(), put.Digest); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- b.peers.Run(ctx) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(10 * time.Second)
	for ok := false; !ok; ok, _ = b.store.Has(put.Digest) {
		if time.Now().After(deadline) {
			t.Fatal("b never fetched the package announced before it started")
		}
		time.Sleep(20 * time.Millisecond) // polling the other replica's store
	}
}
