package image

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// LogProgress reports a pull in the daemon's log: a line when a layer
// starts and ends downloading, and at most one every 5 s in between.
func LogProgress(log *slog.Logger) func(Progress) {
	var mu sync.Mutex
	last := map[string]time.Time{}
	return func(p Progress) {
		mu.Lock()
		defer mu.Unlock()
		switch p.Step {
		case "download":
			key := p.Image + p.Layer
			t, seen := last[key]
			finished := p.Total > 0 && p.Done >= p.Total
			if seen && !finished && time.Since(t) < 5*time.Second {
				return
			}
			last[key] = time.Now()
			log.Info("image pull", "image", p.Image, "layer", fmt.Sprintf("%d/%d", p.Index, p.Count),
				"digest", p.Layer, "done", p.Done, "total", p.Total)
		case "unpack":
			log.Info("image unpack", "image", p.Image, "layer", fmt.Sprintf("%d/%d", p.Index, p.Count), "digest", p.Layer)
		case "build":
			log.Info("image build ext4", "image", p.Image, "bytes", p.Total)
		}
	}
}

// BarProgress draws a pull on a terminal: one line per layer, redrawn in
// place with a bar while it downloads.
func BarProgress(w io.Writer) func(Progress) {
	var mu sync.Mutex
	open := ""
	return func(p Progress) {
		mu.Lock()
		defer mu.Unlock()
		line := ""
		switch p.Step {
		case "download":
			line = fmt.Sprintf("layer %d/%d %s %s %s", p.Index, p.Count, p.Layer, bar(p.Done, p.Total, 30), bytesText(p.Done, p.Total))
		case "unpack":
			line = fmt.Sprintf("unpack %d/%d %s", p.Index, p.Count, p.Layer)
		case "build":
			line = fmt.Sprintf("build ext4 from %.1f MB of files", float64(p.Total)/1e6)
		default:
			return
		}
		key := p.Step + p.Layer
		if key == open {
			fmt.Fprintf(w, "\r\033[K%s", line)
			return
		}
		if open != "" {
			fmt.Fprintln(w)
		}
		fmt.Fprint(w, line)
		open = key
		if p.Step != "download" {
			fmt.Fprintln(w)
			open = ""
		}
	}
}

func bar(done, total int64, width int) string {
	if total <= 0 {
		return "[" + strings.Repeat("?", width) + "]"
	}
	n := int(min(done, total) * int64(width) / total)
	return "[" + strings.Repeat("=", n) + strings.Repeat(" ", width-n) + "]"
}

func bytesText(done, total int64) string {
	if total <= 0 {
		return fmt.Sprintf("%.1f MB", float64(done)/1e6)
	}
	return fmt.Sprintf("%.1f/%.1f MB", float64(done)/1e6, float64(total)/1e6)
}

// LineProgress writes one plain line per step, for output that is not a
// terminal.
func LineProgress(w io.Writer) func(Progress) {
	return func(p Progress) {
		switch p.Step {
		case "download":
			if p.Total > 0 && p.Done >= p.Total {
				fmt.Fprintf(w, "layer %d/%d %s downloaded (%s)\n", p.Index, p.Count, p.Layer, bytesText(p.Done, 0))
			}
		case "unpack":
			fmt.Fprintf(w, "unpack %d/%d %s\n", p.Index, p.Count, p.Layer)
		case "build":
			fmt.Fprintf(w, "build ext4 from %.1f MB of files\n", float64(p.Total)/1e6)
		}
	}
}
