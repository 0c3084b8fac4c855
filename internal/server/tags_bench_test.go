package server

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// BenchmarkTagPatch measures one PATCH /vm/{h}/tags that replaces a VM's
// tags with n tags of size bytes each, and the latency of GET /nodes
// requests sent one after another from another client while the PATCHes
// run. It reports the PATCH status, and the median and worst list latency.
// Figures and the machine: docs/benchmarks.md.
func BenchmarkTagPatch(b *testing.B) {
	for _, tc := range []struct{ n, size int }{{256, 1024}, {10_000, 7}, {30_000, 7}, {100_000, 7}} {
		b.Run(fmt.Sprintf("tags=%d,bytes=%d", tc.n, tc.size), func(b *testing.B) {
			ts := newTestServer(b, "")
			if status, body := benchDo(b, "POST", ts.URL+"/hostgroup/sbox/nodes", "{}"); status != http.StatusCreated {
				b.Fatalf("create: %d %s", status, body)
			}
			tags := make([]string, tc.n)
			for i := range tags {
				tags[i] = fmt.Sprintf("k%d=%s", i, strings.Repeat("v", tc.size))[:tc.size]
			}
			body, _ := json.Marshal(map[string][]string{"replace": tags})
			var lat []time.Duration
			status := 0
			b.ResetTimer()
			for range b.N {
				stop, done := make(chan struct{}), make(chan []time.Duration)
				go func() {
					var l []time.Duration
					for {
						select {
						case <-stop:
							done <- l
							return
						default:
						}
						start := time.Now()
						if s, _ := benchDo(b, "GET", ts.URL+"/nodes", ""); s != http.StatusOK {
							b.Errorf("GET /nodes = %d", s)
						}
						l = append(l, time.Since(start))
					}
				}()
				status, _ = benchDo(b, "PATCH", ts.URL+"/vm/sbox-1/tags", string(body))
				close(stop)
				lat = append(lat, <-done...)
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(status), "patch-status")
			if len(lat) > 0 {
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "list-p50-ms")
				b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "list-max-ms")
			}
		})
	}
}

func benchDo(b *testing.B, method, url, body string) (int, string) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Error(err)
		return 0, ""
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data)
}
