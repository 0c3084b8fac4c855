package guest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/openslicer/openslicer/api"
)

// exitInternal is the exit code recorded for userdata the agent could not
// start for a reason of its own (no pipe for its output).
const exitInternal = 1

// parseMarker reads the userdata marker: the exit code written by this
// agent, or nil for an empty marker (written by older agents) or one that
// does not hold a number.
func parseMarker(data []byte) *int {
	s := strings.TrimSpace(string(data))
	if s == "" {
		return nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return nil
	}
	return &n
}

// formatMarker is the marker's content for an exit code.
func formatMarker(code int) []byte {
	return []byte(strconv.Itoa(code) + "\n")
}

// hasUserdata reports whether script is anything to run.
func hasUserdata(script string) bool {
	return strings.TrimSpace(script) != ""
}

// userdataArgv is how the userdata file at path is run: directly when the
// script starts with "#!" (the kernel picks its interpreter), else with
// shell.
func userdataArgv(script, path, shell string) []string {
	if strings.HasPrefix(script, "#!") {
		return []string{path}
	}
	return []string{shell, path}
}

// userdataEnv is userdata's environment: TARGET_USER names the default
// user; HOME is root's home.
func userdataEnv(targetUser, home string) []string {
	return []string{"PATH=" + defaultPath, "HOME=" + home, "TARGET_USER=" + targetUser}
}

// firstBootUser picks the account agent.FirstBoot acts for: the one named, which
// must exist (api.ErrInvalid otherwise), or else def, the default exec user.
func firstBootUser(name string, def account, accounts []account) (account, error) {
	if name == "" {
		return def, nil
	}
	for _, a := range accounts {
		if a.Name == name {
			return a, nil
		}
	}
	return account{}, fmt.Errorf("%w: default user %q is not in the image's /etc/passwd", api.ErrInvalid, name)
}

// mergeAuthorizedKeys appends the lines of keys that existing does not
// hold yet (compared with surrounding white space trimmed) and returns the
// new content and how many lines were added. Blank lines in keys are
// skipped, as are repeats among keys themselves.
func mergeAuthorizedKeys(existing []byte, keys []string) ([]byte, int) {
	have := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(existing))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		have[strings.TrimSpace(sc.Text())] = true
	}
	out := bytes.Clone(existing)
	added := 0
	for _, k := range keys {
		for line := range strings.Lines(k) {
			line = strings.TrimSpace(line)
			if line == "" || have[line] {
				continue
			}
			if len(out) > 0 && out[len(out)-1] != '\n' {
				out = append(out, '\n')
			}
			out = append(out, line...)
			out = append(out, '\n')
			have[line] = true
			added++
		}
	}
	return out, added
}

// maxConsoleLine is the longest line lineWriter holds back waiting for its
// newline; longer ones are written in pieces.
const maxConsoleLine = 4 << 10

// lineWriter writes what it is given to w in whole lines, each with prefix
// in front, so that output copied to a shared console does not mix with
// other writers in the middle of a line. Flush writes a last line that has
// no newline. Errors of w are dropped: the console is best effort.
type lineWriter struct {
	w      io.Writer
	prefix string
	buf    []byte
}

func (lw *lineWriter) Write(p []byte) (int, error) {
	lw.buf = append(lw.buf, p...)
	for {
		i := bytes.IndexByte(lw.buf, '\n')
		switch {
		case i >= 0 && i <= maxConsoleLine:
			lw.emit(lw.buf[:i])
			lw.buf = lw.buf[i+1:]
		case len(lw.buf) >= maxConsoleLine:
			lw.emit(lw.buf[:maxConsoleLine])
			lw.buf = lw.buf[maxConsoleLine:]
		default:
			lw.buf = bytes.Clone(lw.buf) // do not pin a large slice
			return len(p), nil
		}
	}
}

// Flush writes what is held back as a line of its own.
func (lw *lineWriter) Flush() {
	if len(lw.buf) > 0 {
		lw.emit(lw.buf)
		lw.buf = nil
	}
}

func (lw *lineWriter) emit(line []byte) {
	out := make([]byte, 0, len(lw.prefix)+len(line)+1)
	out = append(out, lw.prefix...)
	out = append(out, line...)
	out = append(out, '\n')
	_, _ = lw.w.Write(out)
}
