package qemu

import (
	"slices"
	"time"
)

// rdtsc reads the time-stamp counter (tsc_amd64.s).
func rdtsc() uint64

// measureTSCkHz measures the host's TSC frequency against the monotonic
// clock over three 20 ms windows and returns the median in kHz, or 0 when
// the readings make no sense (a TSC that stops or jumps).
func measureTSCkHz() int64 {
	var samples []int64
	for range 3 {
		c0, t0, ok0 := tscNow()
		time.Sleep(20 * time.Millisecond)
		c1, t1, ok1 := tscNow()
		ns := t1.Sub(t0).Nanoseconds()
		if !ok0 || !ok1 || c1 <= c0 || ns <= 0 {
			continue
		}
		samples = append(samples, int64((c1-c0)*1_000_000/uint64(ns)))
	}
	if len(samples) == 0 {
		return 0
	}
	slices.Sort(samples)
	khz := samples[len(samples)/2]
	if khz < 100_000 || khz > 10_000_000 { // outside 100 MHz–10 GHz
		return 0
	}
	return khz
}

// tscNow reads the TSC and the clock together: the TSC is read on both
// sides of the clock and the midpoint kept, retrying when the two reads
// are far apart (the thread was preempted between them).
func tscNow() (uint64, time.Time, bool) {
	for range 10 {
		a := rdtsc()
		t := time.Now()
		b := rdtsc()
		if b > a && b-a < 20_000 {
			return a + (b-a)/2, t, true
		}
	}
	return 0, time.Time{}, false
}
