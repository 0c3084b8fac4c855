// Package procfile parses the /proc files both the host and the guest
// read: the daemon for its host metrics (internal/server), the guest agent
// for a VM's stats (internal/guest). Each parser takes a file's content and
// is tested on samples; the callers read the files. Standard library only.
package procfile

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// Mem is what /proc/meminfo says of memory, in bytes.
type Mem struct {
	Total, Available uint64
}

// Meminfo reads MemTotal and MemAvailable (kB in the file). A kernel
// without MemAvailable (before 3.14) gets MemFree+Buffers+Cached instead.
func Meminfo(data []byte) (Mem, error) {
	kb := map[string]uint64{}
	for _, f := range LineFields(data) {
		if len(f) < 2 {
			continue
		}
		n, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			continue
		}
		kb[strings.TrimSuffix(f[0], ":")] = n
	}
	total, ok := kb["MemTotal"]
	if !ok {
		return Mem{}, fmt.Errorf("meminfo: no MemTotal")
	}
	avail, ok := kb["MemAvailable"]
	if !ok {
		avail = kb["MemFree"] + kb["Buffers"] + kb["Cached"]
	}
	return Mem{Total: total * 1024, Available: min(avail, total) * 1024}, nil
}

// Loadavg reads the 1, 5 and 15 minute load averages.
func Loadavg(data []byte) ([3]float64, error) {
	var la [3]float64
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return la, fmt.Errorf("loadavg: %d fields, want at least 3", len(f))
	}
	for i := range la {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return la, fmt.Errorf("loadavg: %w", err)
		}
		la[i] = v
	}
	return la, nil
}

// tcpEstablished is the "st" value of an established socket in
// /proc/net/tcp and tcp6.
const tcpEstablished = "01"

// EstablishedTCP counts the established sockets in a /proc/net/tcp or
// tcp6 file.
func EstablishedTCP(data []byte) int64 {
	var n int64
	for i, f := range LineFields(data) {
		if i == 0 || len(f) < 4 { // the header
			continue
		}
		if f[3] == tcpEstablished {
			n++
		}
	}
	return n
}

// FirstInt reads the first number of a file such as
// /proc/sys/fs/file-nr or /proc/sys/kernel/random/entropy_avail.
func FirstInt(data []byte) (int64, error) {
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return 0, fmt.Errorf("empty")
	}
	return strconv.ParseInt(f[0], 10, 64)
}

// LineFields splits data into lines of white-space separated fields,
// dropping empty lines.
func LineFields(data []byte) [][]string {
	var out [][]string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) > 0 {
			out = append(out, f)
		}
	}
	return out
}
