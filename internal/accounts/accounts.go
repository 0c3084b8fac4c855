// Package accounts reads the account files of a Linux system, passwd(5)
// and group(5): the one parser the guest agent (who runs a command) and
// the image builder (which user an image lacks) share. Pure functions
// over a file's bytes; standard library only.
package accounts

import (
	"bufio"
	"bytes"
	"strconv"
	"strings"
)

// User is one line of /etc/passwd, the fields this module uses.
type User struct {
	Name     string
	UID, GID uint32
	Home     string
	Shell    string
}

// Group is one line of /etc/group.
type Group struct {
	Name    string
	GID     uint32
	Members []string
}

// ParsePasswd reads passwd(5) lines; comments, blank and malformed lines
// (fewer than seven fields, a uid or gid that is not a number) are
// skipped.
func ParsePasswd(data []byte) []User {
	var us []User
	for _, f := range colonLines(data, 7) {
		uid, err1 := strconv.ParseUint(f[2], 10, 32)
		gid, err2 := strconv.ParseUint(f[3], 10, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		us = append(us, User{Name: f[0], UID: uint32(uid), GID: uint32(gid), Home: f[5], Shell: strings.TrimSpace(f[6])})
	}
	return us
}

// ParseGroup reads group(5) lines; comments, blank and malformed lines
// are skipped.
func ParseGroup(data []byte) []Group {
	var gs []Group
	for _, f := range colonLines(data, 4) {
		gid, err := strconv.ParseUint(f[2], 10, 32)
		if err != nil {
			continue
		}
		g := Group{Name: f[0], GID: uint32(gid)}
		if f[3] != "" {
			g.Members = strings.Split(f[3], ",")
		}
		gs = append(gs, g)
	}
	return gs
}

// colonLines splits the non-comment lines of data into n colon-separated
// fields, dropping lines with fewer.
func colonLines(data []byte, n int) [][]string {
	var out [][]string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if f := strings.SplitN(line, ":", n); len(f) == n {
			out = append(out, f)
		}
	}
	return out
}
