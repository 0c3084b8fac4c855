package server

import (
	"bufio"
	"os"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openslicer/openslicer/internal/procfile"
)

// hostCollector reports the host's load, memory, egress bytes, open files
// and open TCP connections, read from /proc and /sys at scrape time (the
// /proc files with internal/procfile, as the guest reads its own). A file
// that cannot be read or parsed leaves its metrics out.
type hostCollector struct{}

func gauge(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, nil, nil) }

var hostDescs = map[string]*prometheus.Desc{
	"load1":     gauge("slicer_system_load_avg_1", "Host load average over 1 minute."),
	"load5":     gauge("slicer_system_load_avg_5", "Host load average over 5 minutes."),
	"load15":    gauge("slicer_system_load_avg_15", "Host load average over 15 minutes."),
	"memTotal":  gauge("slicer_system_memory_total_bytes", "Host memory."),
	"memAvail":  gauge("slicer_system_memory_available_bytes", "Host memory available."),
	"egressTx":  gauge("slicer_system_egress_tx", "Bytes sent by the host's default-route interface."),
	"egressRx":  gauge("slicer_system_egress_rx", "Bytes received by the host's default-route interface."),
	"openFiles": gauge("slicer_system_open_files", "Open file handles on the host."),
	"openConns": gauge("slicer_system_open_connections", "Established TCP connections on the host."),
}

func (hostCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range hostDescs {
		ch <- d
	}
}

func (hostCollector) Collect(ch chan<- prometheus.Metric) {
	emit := func(key string, v float64) {
		ch <- prometheus.MustNewConstMetric(hostDescs[key], prometheus.GaugeValue, v)
	}
	if l, err := procfile.Loadavg(readBytes("/proc/loadavg")); err == nil {
		emit("load1", l[0])
		emit("load5", l[1])
		emit("load15", l[2])
	}
	if mem, err := procfile.Meminfo(readBytes("/proc/meminfo")); err == nil {
		emit("memTotal", float64(mem.Total))
		emit("memAvail", float64(mem.Available))
	}
	if dev := defaultRouteDevice(readFile("/proc/net/route")); dev != "" {
		emit("egressTx", readNumber("/sys/class/net/"+dev+"/statistics/tx_bytes"))
		emit("egressRx", readNumber("/sys/class/net/"+dev+"/statistics/rx_bytes"))
	}
	if n, err := procfile.FirstInt(readBytes("/proc/sys/fs/file-nr")); err == nil {
		emit("openFiles", float64(n))
	}
	emit("openConns", float64(procfile.EstablishedTCP(readBytes("/proc/net/tcp"))+procfile.EstablishedTCP(readBytes("/proc/net/tcp6"))))
}

// readBytes returns the file's content; nothing when it cannot be read.
func readBytes(path string) []byte {
	b, _ := os.ReadFile(path)
	return b
}

func readFile(path string) string { return string(readBytes(path)) }

func readNumber(path string) float64 {
	n, _ := strconv.ParseFloat(strings.TrimSpace(readFile(path)), 64)
	return n
}

// defaultRouteDevice returns the interface of the IPv4 default route in
// /proc/net/route, or "".
func defaultRouteDevice(s string) string {
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 2 && f[1] == "00000000" && f[0] != "Iface" {
			return f[0]
		}
	}
	return ""
}
