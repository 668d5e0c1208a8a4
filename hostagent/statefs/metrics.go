package statefs

import (
	"os"
	"path/filepath"
	"strings"

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
	for _, r := range s.attached {
		attached[r]++
	}
	s.amu.Unlock()
	var out []Resource
	tenants, _ := os.ReadDir(s.root)
	for _, t := range tenants {
		if !t.IsDir() {
			continue
		}
		res, _ := os.ReadDir(filepath.Join(s.root, t.Name()))
		for _, r := range res {
			mnt := filepath.Join(s.root, t.Name(), r.Name())
			// Not image files, nor a weed mount's cache (.NAME.cache).
			if !r.IsDir() || strings.HasSuffix(r.Name(), ".img") || strings.HasPrefix(r.Name(), ".") {
				continue
			}
			if ok, err := mounted(mnt); err != nil || !ok {
				continue
			}
			var st unix.Statfs_t
			if unix.Statfs(mnt, &st) != nil {
				continue
			}
			bs := int64(st.Bsize)
			out = append(out, Resource{Tenant: t.Name(), Name: r.Name(), SizeBytes: int64(st.Blocks) * bs,
				UsedBytes: int64(st.Blocks-st.Bfree) * bs, Attached: attached[t.Name()+"/"+r.Name()]})
		}
	}
	return out
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
