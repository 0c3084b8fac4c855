package guest

import (
	"errors"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openslicer/openslicer/api"
)

func u32(v uint32) *uint32 { return &v }

func modePtr(m fs.FileMode) *fs.FileMode { return &m }

func TestParseUpload(t *testing.T) {
	tests := []struct {
		name   string
		query  string
		header http.Header
		length int64
		want   upload
		err    error  // class, when it fails
		errHas string // text the error must contain
	}{
		{
			name: "write file", query: "path=/tmp/x", length: 5,
			want: upload{rawPath: "/tmp/x", size: 5},
		},
		{
			name:   "v1 file",
			query:  "path=~/d/&mode=cp-v1-binary&copy_semantics=cp-v1&source_name=a+b.txt&source_type=file&uid=0&gid=10&permissions=600",
			length: -1,
			want:   upload{v1: true, rawPath: "~/d/", sourceName: "a b.txt", uid: u32(0), gid: u32(10), perm: modePtr(0o600), size: -1},
		},
		{
			name:   "v1 tar",
			query:  "path=/srv&mode=cp-v1-tar&copy_semantics=cp-v1&source_type=directory&copy_contents=true&exclude=*.log&exclude=./node_modules/",
			header: http.Header{api.HeaderUnpackedSize: {"1234"}}, length: -1,
			want: upload{tar: true, v1: true, rawPath: "/srv", contents: true, exclude: []string{"*.log", "node_modules"}, size: 1234},
		},
		{
			name: "legacy tar without size", query: "path=/srv&mode=tar", length: -1,
			want: upload{tar: true, rawPath: "/srv", size: -1},
		},
		{
			name: "legacy mode with v1 semantics", query: "path=/srv&mode=binary&copy_semantics=cp-v1", length: 3,
			want: upload{v1: true, rawPath: "/srv", size: 3},
		},
		{
			name: "NonRootUser is the default user", query: "path=/x&uid=4294967295&gid=4294967295", length: -1,
			want: upload{rawPath: "/x", size: -1},
		},
		{name: "no path", query: "mode=cp-v1-binary", err: api.ErrInvalid, errHas: "path"},
		{name: "unknown mode", query: "path=/x&mode=zip", err: api.ErrInvalid, errHas: `"zip"`},
		{name: "recursive upload", query: "path=/x&mode=cp-v1-recursive", err: api.ErrInvalid, errHas: "downloads only"},
		{name: "bad semantics", query: "path=/x&mode=cp-v1-binary&copy_semantics=cp-v2", err: api.ErrInvalid, errHas: "copy_semantics"},
		{name: "name with slash", query: "path=/x&mode=cp-v1-binary&source_name=a/b", err: api.ErrInvalid, errHas: "source_name"},
		{name: "name dotdot", query: "path=/x&mode=cp-v1-binary&source_name=..", err: api.ErrInvalid, errHas: "source_name"},
		{name: "type mismatch", query: "path=/x&mode=cp-v1-tar&source_type=file", err: api.ErrInvalid, errHas: "source_type"},
		{name: "bad bool", query: "path=/x&mode=cp-v1-tar&copy_contents=yes", err: api.ErrInvalid, errHas: "copy_contents"},
		{name: "bad uid", query: "path=/x&uid=-1", err: api.ErrInvalid, errHas: "uid"},
		{name: "bad permissions", query: "path=/x&permissions=0999", err: api.ErrInvalid, errHas: "permissions"},
		{name: "bad exclude", query: "path=/x&mode=tar&exclude=[", err: api.ErrInvalid, errHas: "exclude"},
		{
			name: "bad unpacked size", query: "path=/x&mode=cp-v1-tar", header: http.Header{api.HeaderUnpackedSize: {"-3"}},
			err: api.ErrInvalid, errHas: api.HeaderUnpackedSize,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, err := url.ParseQuery(tt.query)
			if err != nil {
				t.Fatal(err)
			}
			got, err := parseUpload(q, tt.header, tt.length)
			if tt.err != nil {
				if !errors.Is(err, tt.err) || !strings.Contains(err.Error(), tt.errHas) {
					t.Fatalf("parseUpload(%s) error = %v, want %v containing %q", tt.query, err, tt.err, tt.errHas)
				}
				if strings.Contains(err.Error(), "invalid mode: cp-v1") {
					t.Errorf("error %q would make the SDK fall back to legacy modes", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseUpload(%s): %v", tt.query, err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(upload{})); diff != "" {
				t.Errorf("parseUpload(%s) (-want +got):\n%s", tt.query, diff)
			}
		})
	}
}

func TestParseDownload(t *testing.T) {
	tests := []struct {
		query string
		want  download
		err   bool
	}{
		{query: "path=/etc/hosts", want: download{rawPath: "/etc/hosts", mode: api.CopyModeBinary}},
		{query: "path=/d&mode=tar", want: download{rawPath: "/d", mode: api.CopyModeTar}},
		{
			query: "path=/d&mode=cp-v1-recursive&copy_semantics=cp-v1&exclude=.git",
			want:  download{rawPath: "/d", mode: api.CopyModeRecursive, v1: true, exclude: []string{".git"}},
		},
		{query: "path=/d&mode=cp-v1-tar", want: download{rawPath: "/d", mode: api.CopyModeTar, v1: true}},
		{query: "path=~&uid=0", want: download{rawPath: "~", mode: api.CopyModeBinary, uid: u32(0)}},
		{query: "mode=cp-v1-binary", err: true},
		{query: "path=/d&mode=rsync", err: true},
		{query: "path=/d&exclude=[a", err: true},
	}
	for _, tt := range tests {
		q, _ := url.ParseQuery(tt.query)
		got, err := parseDownload(q)
		if tt.err {
			if !errors.Is(err, api.ErrInvalid) {
				t.Errorf("parseDownload(%s) error = %v, want invalid", tt.query, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseDownload(%s): %v", tt.query, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(download{})); diff != "" {
			t.Errorf("parseDownload(%s) (-want +got):\n%s", tt.query, diff)
		}
	}
}

func TestParsePermissions(t *testing.T) {
	tests := []struct {
		in   string
		want fs.FileMode
		err  bool
	}{
		{in: "0644", want: 0o644},
		{in: "644", want: 0o644},
		{in: "600", want: 0o600},
		{in: "0o755", want: 0o755},
		{in: "0", want: 0},
		{in: "4755", want: 0o755 | fs.ModeSetuid},
		{in: "3777", want: 0o777 | fs.ModeSetgid | fs.ModeSticky},
		{in: "", err: true},
		{in: "rw-r--r--", err: true},
		{in: "0888", err: true},
		{in: "17777", err: true},
	}
	for _, tt := range tests {
		got, err := parsePermissions(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("parsePermissions(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestUploadTarget(t *testing.T) {
	var (
		missing = destState{}
		dir     = destState{exists: true, isDir: true}
		file    = destState{exists: true}
	)
	v1File := upload{v1: true, sourceName: "a.txt"}
	v1Dir := upload{v1: true, tar: true, sourceName: "proj"}
	tests := []struct {
		name  string
		u     upload
		dest  string
		slash bool
		st    destState
		want  string // empty: an error
	}{
		{"file into existing dir", v1File, "/d", false, dir, "/d/a.txt"},
		{"file into existing dir with slash", v1File, "/d", true, dir, "/d/a.txt"},
		{"file slash on missing dir", v1File, "/d", true, missing, ""},
		{"file slash on a file", v1File, "/d", true, file, ""},
		{"file to new name", v1File, "/d/b.txt", false, missing, "/d/b.txt"},
		{"file over file", v1File, "/d/b.txt", false, file, "/d/b.txt"},
		{"file into dir without a name", upload{v1: true}, "/d", false, dir, ""},
		{"dir into existing dir", v1Dir, "/d", false, dir, "/d/proj"},
		{"dir contents into existing dir", upload{v1: true, tar: true, contents: true}, "/d", false, dir, "/d"},
		{"dir to new name", v1Dir, "/d/new", false, missing, "/d/new"},
		{"dir onto file", v1Dir, "/d/f", false, file, ""},
		{"dir into existing dir without a name", upload{v1: true, tar: true}, "/d", false, dir, ""},
		{"legacy file", upload{}, "/d/x", true, missing, "/d/x"},
		{"legacy file onto dir", upload{}, "/d", false, dir, ""},
		{"legacy tar into dir", upload{tar: true, sourceName: "proj"}, "/d", false, dir, "/d"},
		{"legacy tar to new dir", upload{tar: true}, "/d/new", false, missing, "/d/new"},
		{"legacy tar onto file", upload{tar: true}, "/d/f", false, file, ""},
	}
	for _, tt := range tests {
		got, err := uploadTarget(tt.u, tt.dest, tt.slash, tt.st)
		switch {
		case tt.want == "" && !errors.Is(err, api.ErrInvalid):
			t.Errorf("%s: uploadTarget = %q, %v; want an invalid-argument error", tt.name, got, err)
		case tt.want != "" && (err != nil || got != tt.want):
			t.Errorf("%s: uploadTarget = %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}
}

func TestDownloadIsTar(t *testing.T) {
	tests := []struct {
		mode    string
		m       fs.FileMode
		want    bool
		errHas  string
		errWant bool
	}{
		{mode: api.CopyModeBinary, m: 0o644, want: false},
		{mode: api.CopyModeBinary, m: fs.ModeDir | 0o755, errWant: true, errHas: "must specify a file not a directory"},
		{mode: api.CopyModeTar, m: fs.ModeDir | 0o755, want: true},
		{mode: api.CopyModeTar, m: 0o644, errWant: true, errHas: "is a file"},
		{mode: api.CopyModeRecursive, m: 0o644, want: false},
		{mode: api.CopyModeRecursive, m: fs.ModeDir | 0o755, want: true},
		{mode: api.CopyModeRecursive, m: fs.ModeNamedPipe | 0o644, errWant: true, errHas: "neither"},
		{mode: api.CopyModeBinary, m: fs.ModeDevice | fs.ModeCharDevice, errWant: true, errHas: "neither"},
	}
	for _, tt := range tests {
		got, err := downloadIsTar(tt.mode, "/p", tt.m)
		if tt.errWant {
			if !errors.Is(err, api.ErrInvalid) || !strings.Contains(err.Error(), tt.errHas) {
				t.Errorf("downloadIsTar(%s, %v) error = %v, want one containing %q", tt.mode, tt.m, err, tt.errHas)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("downloadIsTar(%s, %v) = %v, %v; want %v", tt.mode, tt.m, got, err, tt.want)
		}
	}
}

func TestSpaceError(t *testing.T) {
	tests := []struct {
		need int64
		free uint64
		err  bool
	}{
		{need: -1, free: 0},
		{need: 0, free: 0},
		{need: 10, free: 10},
		{need: 11, free: 10, err: true},
		{need: 1 << 62, free: 1 << 40, err: true},
	}
	for _, tt := range tests {
		err := spaceError(tt.need, tt.free, "/data")
		if tt.err != (err != nil) {
			t.Errorf("spaceError(%d, %d) = %v, want error %v", tt.need, tt.free, err, tt.err)
		}
		if err != nil && (!errors.Is(err, api.ErrInsufficientStorage) || api.StatusOf(err) != http.StatusInsufficientStorage ||
			!strings.Contains(err.Error(), "/data")) {
			t.Errorf("spaceError(%d, %d) = %v, want a 507 naming the sizes and /data", tt.need, tt.free, err)
		}
	}
}

func TestFileMode(t *testing.T) {
	if got := fileMode(modePtr(0o600), 0o755, true); got != 0o600 {
		t.Errorf("requested mode: got %v", got)
	}
	if got := fileMode(nil, 0o755|fs.ModeSetuid, true); got != 0o755 {
		t.Errorf("replaced file's mode: got %v, want 0755", got)
	}
	if got := fileMode(nil, 0, false); got != 0o644 {
		t.Errorf("new file: got %v, want 0644", got)
	}
	if got := entryMode(nil, 0o100755); got != 0o755 {
		t.Errorf("entry mode: got %v, want 0755", got)
	}
	if got := entryMode(modePtr(0o640), 0o755); got != 0o640 {
		t.Errorf("entry mode with permissions: got %v, want 0640", got)
	}
}

func TestDownloadName(t *testing.T) {
	tests := []struct{ raw, clean, want string }{
		{"/home/u/my file.txt", "/home/u/my file.txt", "my file.txt"},
		{"/srv/proj/", "/srv/proj", "proj"},
		{"/srv/proj/.", "/srv/proj", ""},
		{"/", "/", ""},
		{"~", "/home/u", "u"},
		{".", "/home/u", ""},
	}
	for _, tt := range tests {
		if got := downloadName(tt.raw, tt.clean); got != tt.want {
			t.Errorf("downloadName(%q, %q) = %q, want %q", tt.raw, tt.clean, got, tt.want)
		}
	}
	if got := octalMode(0o755 | fs.ModeSetuid); got != "0755" {
		t.Errorf("octalMode = %q, want 0755", got)
	}
}
