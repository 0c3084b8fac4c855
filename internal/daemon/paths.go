package daemon

import (
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"
)

// Paths are every location the daemon writes to.
type Paths struct {
	DataDir string // working files: disks, the .slicer state directory, relative sockets
	State   string // bbolt state file
	Disks   string // <hostname>.img root disks
	Commits string // <commit id>/ directories, each holding a commit's read-only disk layer
	Run     string // one directory per VM: sockets and pidfile
	Logs    string // <hostname>.txt serial consoles
	Images  string // built images cache
	Token   string // API bearer token
	Secrets string // host-side secret store
}

// ResolvePaths returns the daemon's paths. With dataDir empty they are
// Slicer's documented defaults: disks and state in the working directory
// cwd, the token under /var/lib/slicer, logs in /var/log/slicer and sockets
// in /run/slicer/<id of cwd> (see runDirFor). With dataDir set, everything
// lives under it.
func ResolvePaths(dataDir, cwd string) Paths {
	if dataDir == "" {
		return Paths{
			DataDir: cwd,
			State:   filepath.Join(cwd, ".slicer", "state.db"),
			Disks:   cwd,
			Commits: filepath.Join(cwd, ".slicer", "commits"),
			Run:     runDirFor(cwd),
			Logs:    "/var/log/slicer",
			Images:  "/var/lib/slicer/images",
			Token:   "/var/lib/slicer/auth/token",
			Secrets: filepath.Join(cwd, ".secrets"),
		}
	}
	if !filepath.IsAbs(dataDir) {
		dataDir = filepath.Join(cwd, dataDir)
	}
	return Paths{
		DataDir: dataDir,
		State:   filepath.Join(dataDir, ".slicer", "state.db"),
		Disks:   filepath.Join(dataDir, "disks"),
		Commits: filepath.Join(dataDir, "commits"),
		Run:     filepath.Join(dataDir, "run"),
		Logs:    filepath.Join(dataDir, "logs"),
		Images:  filepath.Join(dataDir, "images"),
		Token:   filepath.Join(dataDir, "auth", "token"),
		Secrets: filepath.Join(dataDir, "secrets"),
	}
}

// runDirFor is the run directory of the daemon whose data directory is
// dataDir, when it keeps its VM sockets under /run/slicer: one directory per
// data directory, named by a digest of its path. VM names are per data
// directory (two daemons in two directories both have a "vm-1"), so a
// shared /run/slicer/<hostname> would let one daemon find the other's qemu
// in "its" run directory ("qemu pid … already runs") and remove files it
// does not own.
func runDirFor(dataDir string) string {
	sum := sha256.Sum256([]byte(filepath.Clean(dataDir)))
	return filepath.Join("/run/slicer", hex.EncodeToString(sum[:6]))
}

// socketPath resolves a relative unix-socket bind address against the data
// directory.
func (p Paths) socketPath(bind string) string {
	if filepath.IsAbs(bind) {
		return bind
	}
	return filepath.Join(p.DataDir, bind)
}
