// Package cpv1test is a table of tar entry names and exclude globs with
// the verdicts cp-v1's rules (api/cpv1) give them, for tests only. The
// host client's extraction of a download (client) and the guest agent's
// extraction of an upload (internal/guest) both run every case, so the two
// ends are held to the same verdicts; api/cpv1's own tests check the rules
// themselves.
package cpv1test

import (
	"archive/tar"
	"bytes"
	"strings"
)

// Verdict is what a copy of a case's tar does.
type Verdict string

const (
	// Written: the copy succeeds and the file is at the case's Path.
	Written Verdict = "written"
	// Skipped: the copy succeeds and writes nothing.
	Skipped Verdict = "skipped"
	// Refused: the copy fails and writes nothing.
	Refused Verdict = "refused"
)

// Body is the content of every case's file.
const Body = "cp-v1"

// Case is a one-file directory copy: a tar holding one regular file named
// Entry, copied with Exclude.
type Case struct {
	Why     string
	Entry   string
	Exclude []string
	Want    Verdict
	Path    string // Written: where the file lands, slash-separated, relative to the destination
}

// Cases are the names and globs both ends must agree on.
var Cases = []Case{
	{"plain name", "a.txt", nil, Written, "a.txt"},
	{"in a directory", "sub/a.txt", nil, Written, "sub/a.txt"},
	{"leading ./ and doubled slashes", ".//sub//b.txt", nil, Written, "sub/b.txt"},
	{"dots inside a name", "a..b/..c", nil, Written, "a..b/..c"},
	{"dot-dot escape", "../evil", nil, Refused, ""},
	{"dot-dot that stays inside", "a/../b", nil, Refused, ""},
	{"absolute name", "/tmp/cpv1-evil", nil, Refused, ""},
	{"empty name", "", nil, Refused, ""},
	{"NUL in the name", "a\x00b", nil, Refused, ""},
	{"NUL after a directory", "sub/\x00", nil, Refused, ""},
	{"base name glob", "a.log", []string{"*.log"}, Skipped, ""},
	{"base name glob in a directory", "sub/a.log", []string{"*.log"}, Skipped, ""},
	{"directory glob with a slash", "node_modules/x/y.js", []string{"node_modules/"}, Skipped, ""},
	{"directory glob deeper down", "web/node_modules/x.js", []string{"node_modules"}, Skipped, ""},
	{"path glob", "sub/a.txt", []string{"sub/*.txt"}, Skipped, ""},
	{"path glob elsewhere", "other/sub/a.txt", []string{"sub/*.txt"}, Written, "other/sub/a.txt"},
	{"glob with ./", "build/out", []string{"./build"}, Skipped, ""},
	{"glob with ./ twice", "build/out", []string{"././build"}, Skipped, ""},
	{"glob with .//", "build/out", []string{".//build"}, Skipped, ""},
	{"prefix is not a directory", "subway/a.txt", []string{"sub"}, Written, "subway/a.txt"},
	{"empty glob", "a.txt", []string{"", "/", "./"}, Written, "a.txt"},
	{"bad glob", "a.txt", []string{"a[b"}, Refused, ""},
	{"NUL in a glob", "a.txt", []string{"a\x00"}, Refused, ""},
}

// Tar returns the case's tar stream. archive/tar cannot write a name with
// a NUL byte, so such a name is written as a PAX record with a stand-in
// byte, then the byte is put back: what a hostile peer would send.
func (c Case) Tar() []byte {
	name := strings.ReplaceAll(c.Entry, "\x00", "\xff")
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	h := &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(Body))}
	if name != c.Entry {
		h.Format = tar.FormatPAX
	}
	if err := tw.WriteHeader(h); err != nil {
		panic(err)
	}
	_, _ = tw.Write([]byte(Body))
	if err := tw.Close(); err != nil {
		panic(err)
	}
	b := buf.Bytes()
	if name != c.Entry {
		rec := []byte("path=" + name + "\n")
		i := bytes.Index(b, rec)
		if i < 0 {
			panic("cpv1test: no PAX path record for " + c.Why)
		}
		copy(b[i:], "path="+c.Entry+"\n")
	}
	return b
}
