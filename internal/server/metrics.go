package server

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/vm"
	"github.com/openslicer/openslicer/internal/vmstate"
)

// metrics holds the daemon's Prometheus metrics, with the names Slicer
// documents (spec §3.17). Each Server has its own registry: no global state.
type metrics struct {
	reg      *prometheus.Registry
	launches *prometheus.CounterVec
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	groups   map[string]bool // the daemon's host groups, the only host_group labels
}

// newMetrics registers the metrics; accel, when set, is the accelerator
// guests run under, reported as slicer_accelerator.
func newMetrics(vms *vm.Manager, accel string) *metrics {
	m := &metrics{
		groups: map[string]bool{},
		reg:    prometheus.NewRegistry(),
		launches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "slicer_vm_launch_total", Help: "VM launches through the API, by host group and HTTP status.",
		}, []string{"host_group", "code"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "slicer_api_requests_total", Help: "API requests by method and HTTP status.",
		}, []string{"method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "slicer_api_request_duration_seconds", Help: "API request duration by method and HTTP status.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 9), // 1 ms to 65 s: creates under TCG take seconds
		}, []string{"method", "code"}),
	}
	m.reg.MustRegister(m.launches, m.requests, m.duration, vmCollector{vms}, hostCollector{})
	if vms != nil { // some tests build a server without a manager
		for _, g := range vms.HostGroups() {
			m.groups[g.Name] = true
		}
	}
	if accel != "" {
		m.reg.MustRegister(acceleratorGauge(accel))
	}
	return m
}

// acceleratorGauge is slicer_accelerator (an extension of Slicer's
// metrics): 1 for the accelerator guests run under, 0 for the other, so
// that either series can be alerted on.
func acceleratorGauge(accel string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "slicer_accelerator", Help: "How guests run: 1 for the accelerator in use (kvm or tcg), 0 for the other.",
	}, []string{"accel"})
	for _, a := range []string{"kvm", "tcg"} {
		v := 0.0
		if a == accel {
			v = 1
		}
		g.WithLabelValues(a).Set(v)
	}
	return g
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// observe records one API request. Long-lived streams (exec, background
// exec logs and waits, copies, watches, shells, tunnels) are counted but
// kept out of the duration histogram, where they would only add noise.
func (m *metrics) observe(r *http.Request, status int, d time.Duration) {
	code := strconv.Itoa(status)
	m.requests.WithLabelValues(r.Method, code).Inc()
	if !longLived(r.URL.Path) {
		m.duration.WithLabelValues(r.Method, code).Observe(d.Seconds())
	}
	if r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/hostgroup/") && strings.HasSuffix(r.URL.Path, "/nodes") {
		m.launches.WithLabelValues(m.groupLabel(r.PathValue("group")), code).Inc()
	}
}

// groupLabel is the host_group label of a launch: the group named in the
// path when the daemon has it, else "". A name taken from the path as it
// is could be anything: invalid UTF-8 makes the Prometheus client panic,
// and every made-up name would add a series.
func (m *metrics) groupLabel(group string) string {
	if m.groups[group] {
		return group
	}
	return ""
}

// vmCollector reports the VMs of the manager at scrape time.
type vmCollector struct{ vms *vm.Manager }

var (
	vmRunningDesc = prometheus.NewDesc("slicer_vm_running",
		"VMs by host group, launch kind (api=true for API launches, false for config count) and state.",
		[]string{"host_group", "api", "state"}, nil)
	vmGPUDesc = prometheus.NewDesc("slicer_vm_gpu_count", "GPUs attached to VMs, by host group.", []string{"host_group"}, nil)
	// An extension: warm pool VMs are not nodes, so slicer_vm_running
	// does not count them.
	poolDesc = prometheus.NewDesc("slicer_warm_pool_vms",
		"Warm pool VMs by host group and state (ready: booted and waiting to be taken; filling: booting), and the pool's target.",
		[]string{"host_group", "state"}, nil)
)

func (c vmCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- vmRunningDesc
	ch <- vmGPUDesc
	ch <- poolDesc
}

func (c vmCollector) Collect(ch chan<- prometheus.Metric) {
	type key struct{ group, api, state string }
	counts := map[key]int{}
	for _, g := range c.vms.HostGroups() {
		ch <- prometheus.MustNewConstMetric(vmGPUDesc, prometheus.GaugeValue, 0, g.Name)
	}
	nodes, _ := c.vms.List(vm.Filter{})
	for _, n := range nodes {
		counts[key{n.HostGroup, strconv.FormatBool(!c.vms.IsProtected(n.Hostname)), vmStateLabel(n)}]++
	}
	for k, v := range counts {
		ch <- prometheus.MustNewConstMetric(vmRunningDesc, prometheus.GaugeValue, float64(v), k.group, k.api, k.state)
	}
	for _, p := range c.vms.PoolStatus() {
		ch <- prometheus.MustNewConstMetric(poolDesc, prometheus.GaugeValue, float64(p.Ready), p.HostGroup, "ready")
		ch <- prometheus.MustNewConstMetric(poolDesc, prometheus.GaugeValue, float64(p.Filling), p.HostGroup, "filling")
		ch <- prometheus.MustNewConstMetric(poolDesc, prometheus.GaugeValue, float64(p.Target), p.HostGroup, "target")
	}
}

// vmStateLabel is the state label of slicer_vm_running: the VM's status
// as Slicer's clients know it (vmstate.State.Status), so a suspended VM
// counts as Paused, a creating one as Running.
func vmStateLabel(n api.Node) string {
	if s := vmstate.State(n.State).Status(); s != "" {
		return s
	}
	return n.Status
}

// longLived reports whether path is a streaming endpoint, whose duration
// is the caller's business.
func longLived(path string) bool {
	if strings.Contains(path, "/exec/") && (strings.HasSuffix(path, "/logs") || strings.HasSuffix(path, "/wait-exit")) {
		return true
	}
	for _, suffix := range []string{"/exec", "/cp", "/fs/watch", "/shell", "/forward"} {
		if strings.HasSuffix(path, suffix) {
			return true
		}
	}
	return false
}
