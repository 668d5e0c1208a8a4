package statefs

import (
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

// Resource is one resource mounted on this host.
type Resource struct {
	Tenant, Name         string
	SizeBytes, UsedBytes int64
	// Attached counts the instances it is attached to.
	Attached int
}

// Resources lists the resources mounted on this host.
func (s *Store) Resources() []Resource {
	s.amu.Lock()
	attached := map[string]int{}
	for _, b := range s.attached {
		attached[b.res]++
	}
	s.amu.Unlock()
	var out []Resource
	tenants, _ := os.ReadDir(s.root)
	for _, t := range tenants {
		if !t.IsDir() || strings.HasPrefix(t.Name(), ".") { // .weed: the weed mounts' own files
			continue
		}
		res, _ := os.ReadDir(filepath.Join(s.root, t.Name()))
		for _, r := range res {
			mnt := filepath.Join(s.root, t.Name(), r.Name())
			if !r.IsDir() || strings.HasSuffix(r.Name(), ".img") {
				continue
			}
			if ok, err := mounted(mnt); err != nil || !ok {
				continue
			}
			st, ok := statfs(mnt)
			if !ok {
				continue
			}
			bs := int64(st.Bsize)
			out = append(out, Resource{Tenant: t.Name(), Name: r.Name(), SizeBytes: int64(st.Blocks) * bs,
				UsedBytes: int64(st.Blocks-st.Bfree) * bs, Attached: attached[t.Name()+"/"+r.Name()]})
		}
	}
	return out
}

// statfs is the file system statistics of mnt, or false when they are
// unknown: within a second (a weed mount whose filer is unreachable must
// not hold up the agent's heartbeat, which reports these).
func statfs(mnt string) (unix.Statfs_t, bool) {
	type result struct {
		st  unix.Statfs_t
		err error
	}
	ch := make(chan result, 1)
	go func() {
		var st unix.Statfs_t
		err := unix.Statfs(mnt, &st)
		ch <- result{st, err}
	}()
	select {
	case r := <-ch:
		return r.st, r.err == nil
	case <-time.After(time.Second):
		return unix.Statfs_t{}, false
	}
}

var (
	sizeDesc = prometheus.NewDesc("ember_state_size_bytes",
		"Size (quota) of a tenant's state resource on this host.", []string{"tenant", "resource"}, nil)
	usedDesc = prometheus.NewDesc("ember_state_used_bytes",
		"Bytes in use in a tenant's state resource on this host.", []string{"tenant", "resource"}, nil)
	attachedDesc = prometheus.NewDesc("ember_state_attached_instances",
		"Instances of this host a tenant's state resource is attached to.", []string{"tenant", "resource"}, nil)
)

// Describe implements prometheus.Collector.
func (s *Store) Describe(ch chan<- *prometheus.Desc) {
	ch <- sizeDesc
	ch <- usedDesc
	ch <- attachedDesc
}

// Collect implements prometheus.Collector: every resource mounted on this
// host, with its size, use and attachments.
func (s *Store) Collect(ch chan<- prometheus.Metric) {
	for _, r := range s.Resources() {
		ch <- prometheus.MustNewConstMetric(sizeDesc, prometheus.GaugeValue, float64(r.SizeBytes), r.Tenant, r.Name)
		ch <- prometheus.MustNewConstMetric(usedDesc, prometheus.GaugeValue, float64(r.UsedBytes), r.Tenant, r.Name)
		ch <- prometheus.MustNewConstMetric(attachedDesc, prometheus.GaugeValue, float64(r.Attached), r.Tenant, r.Name)
	}
}
