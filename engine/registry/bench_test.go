package registry

import (
	"context"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/testenv"
)

// BenchmarkResolve measures the hot-path lookup without and with the cache.
func BenchmarkResolve(b *testing.B) {
	ctx := context.Background()
	rdb, _ := testenv.Redis(b)
	for _, tc := range []struct {
		name string
		run  bool
	}{{"redis", false}, {"cached", true}} {
		b.Run(tc.name, func(b *testing.B) {
			r, _ := New(rdb, WithCacheTTL(time.Hour))
			if tc.run {
				running(b, r)
			}
			if _, err := r.PutFunction(ctx, fn("f")); err != nil {
				b.Fatal(err)
			}
			waitFor(b, "first resolve", func() bool { _, err := r.Resolve(ctx, "t1", "f", ""); return err == nil })
			b.ResetTimer()
			for b.Loop() {
				if _, err := r.Resolve(ctx, "t1", "f", ""); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
