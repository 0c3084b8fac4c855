package guest

import (
	"fmt"
	"io/fs"
	"path"

	"github.com/openslicer/openslicer/api"
)

// destState is what an upload's destination path names before the copy,
// symbolic links followed.
type destState struct {
	exists, isDir bool
}

// uploadTarget resolves where an upload lands: for a file, the file to
// write; for a tar, the directory to extract into (created when missing,
// with its parents). dest is the clean absolute destination, slash whether
// it was requested with a trailing slash.
//
// cp-v1 resolves like cp(1) (spec §3.8):
//   - file: into an existing directory, or a path ending in "/" (which must
//     then exist), as <source_name>; otherwise dest itself.
//   - directory: into an existing directory as <source_name>, unless
//     copy_contents, when dest receives the contents; a missing dest is
//     created and receives the contents.
//
// The legacy modes write a file to dest itself and extract a tar into
// dest.
func uploadTarget(u upload, dest string, slash bool, st destState) (string, error) {
	switch {
	case !u.v1 && !u.tar:
		if st.isDir {
			return "", fmt.Errorf("%w: %q is a directory", api.ErrInvalid, dest)
		}
		return dest, nil
	case !u.v1:
		if st.exists && !st.isDir {
			return "", fmt.Errorf("%w: %q exists and is not a directory", api.ErrInvalid, dest)
		}
		return dest, nil
	case !u.tar:
		return fileTarget(u, dest, slash, st)
	}
	return dirTarget(u, dest, st)
}

// fileTarget is the cp-v1 target of a single file.
func fileTarget(u upload, dest string, slash bool, st destState) (string, error) {
	switch {
	case st.isDir:
		return intoDir(dest, u.sourceName)
	case slash && !st.exists:
		return "", fmt.Errorf("%w: destination directory %q does not exist", api.ErrInvalid, dest+"/")
	case slash:
		return "", fmt.Errorf("%w: destination %q is not a directory", api.ErrInvalid, dest+"/")
	}
	return dest, nil
}

// dirTarget is the cp-v1 target of a directory (tar) upload.
func dirTarget(u upload, dest string, st destState) (string, error) {
	switch {
	case st.exists && !st.isDir:
		return "", fmt.Errorf("%w: cannot copy a directory onto file %q", api.ErrInvalid, dest)
	case st.isDir && !u.contents:
		return intoDir(dest, u.sourceName)
	}
	return dest, nil
}

// intoDir names the entry name in directory dir; name must be given.
func intoDir(dir, name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("%w: %q is a directory and no source_name says what to call the copy in it", api.ErrInvalid, dir)
	}
	return path.Join(dir, name), nil
}

// downloadIsTar decides what a download sends for a source: a tar of a
// directory, else the bytes of a regular file. cp-v1-binary (and legacy
// binary) wants a file, cp-v1-tar a directory, cp-v1-recursive either.
// The directory error keeps the words legacy agents used, which the SDK
// looks for.
func downloadIsTar(mode, p string, m fs.FileMode) (bool, error) {
	isDir := m.IsDir()
	switch {
	case !isDir && !m.IsRegular():
		return false, fmt.Errorf("%w: %q is neither a regular file nor a directory", api.ErrInvalid, p)
	case mode == api.CopyModeBinary && isDir:
		return false, fmt.Errorf("%w: must specify a file not a directory: %q (use mode %s or %s)",
			api.ErrInvalid, p, api.CopyModeTar, api.CopyModeRecursive)
	case mode == api.CopyModeTar && !isDir:
		return false, fmt.Errorf("%w: %q is a file, not a directory (use mode %s or %s)",
			api.ErrInvalid, p, api.CopyModeBinary, api.CopyModeRecursive)
	}
	return isDir, nil
}

// owner is who owns what an upload creates.
type owner struct {
	uid, gid int
	chown    bool // false: what the process creates is already theirs
}

// spaceError says whether need bytes fit in the free bytes of the file
// system holding dir; need < 0 (unknown) always fits.
func spaceError(need int64, free uint64, dir string) error {
	if need <= 0 || uint64(need) <= free {
		return nil
	}
	return fmt.Errorf("%w: the copy needs %d bytes but the file system holding %q has %d bytes free",
		api.ErrInsufficientStorage, need, dir, free)
}

// fileMode is the mode of a file an upload writes: the requested one, else
// that of the file it replaces (as cp(1) keeps it), else 0644. A copy
// carries no mode of its own: the SDK sends none for a single file.
func fileMode(requested *fs.FileMode, replaced fs.FileMode, replaces bool) fs.FileMode {
	switch {
	case requested != nil:
		return *requested
	case replaces:
		return replaced.Perm()
	}
	return 0o644
}

// entryMode is the mode of a regular file extracted from a tar: the
// requested one, else the entry's permission bits.
func entryMode(requested *fs.FileMode, tarMode int64) fs.FileMode {
	if requested != nil {
		return *requested
	}
	return fs.FileMode(tarMode).Perm()
}
