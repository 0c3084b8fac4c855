package server

import (
	"bufio"
	"os"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// hostCollector reports the host's load, memory, egress bytes, open files
// and open TCP connections, read from /proc and /sys at scrape time.
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
	if l, ok := parseLoadavg(readFile("/proc/loadavg")); ok {
		emit("load1", l[0])
		emit("load5", l[1])
		emit("load15", l[2])
	}
	mem := parseMeminfo(readFile("/proc/meminfo"))
	emit("memTotal", float64(mem["MemTotal"]))
	emit("memAvail", float64(mem["MemAvailable"]))
	if dev := defaultRouteDevice(readFile("/proc/net/route")); dev != "" {
		emit("egressTx", readNumber("/sys/class/net/"+dev+"/statistics/tx_bytes"))
		emit("egressRx", readNumber("/sys/class/net/"+dev+"/statistics/rx_bytes"))
	}
	if f := strings.Fields(readFile("/proc/sys/fs/file-nr")); len(f) > 0 {
		n, _ := strconv.ParseFloat(f[0], 64)
		emit("openFiles", n)
	}
	emit("openConns", float64(countEstablished(readFile("/proc/net/tcp"))+countEstablished(readFile("/proc/net/tcp6"))))
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func readNumber(path string) float64 {
	n, _ := strconv.ParseFloat(strings.TrimSpace(readFile(path)), 64)
	return n
}

func parseLoadavg(s string) ([3]float64, bool) {
	var l [3]float64
	f := strings.Fields(s)
	if len(f) < 3 {
		return l, false
	}
	for i := range l {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return l, false
		}
		l[i] = v
	}
	return l, true
}

// parseMeminfo returns /proc/meminfo's values in bytes.
func parseMeminfo(s string) map[string]uint64 {
	out := map[string]uint64{}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			continue
		}
		if len(f) > 1 && f[1] == "kB" {
			v *= 1024
		}
		out[key] = v
	}
	return out
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

// countEstablished counts the TCP sockets in state ESTABLISHED (01) in a
// /proc/net/tcp listing.
func countEstablished(s string) int {
	n := 0
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) > 3 && f[3] == "01" {
			n++
		}
	}
	return n
}
