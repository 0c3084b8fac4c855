package guest

import (
	"cmp"
	"fmt"
	"math"
	"path"
	"regexp"
	"strings"

	"github.com/openslicer/openslicer/api"
)

// Chunked uploads (spec §3.8 "Chunked uploads"): the SDK uploads a large
// copy as chunk files plus a manifest into a session directory next to
// the destination, then runs "slicer-agent upload finalise" to verify the
// chunks and assemble them. The pure part is here; upload_linux.go runs it.

// chunkedCopyVersion is what "upload check" prints: the chunked-copy
// protocol this agent finalises.
const chunkedCopyVersion = "chunked-copy-v2"

// copyManifest is the session's manifest.json, as the SDK writes it.
type copyManifest struct {
	Version       int         `json:"version"` // 1 or 2
	Mode          string      `json:"mode"`    // "binary" or "tar"
	Destination   string      `json:"destination"`
	UID           uint32      `json:"uid"`
	GID           uint32      `json:"gid"`
	Permissions   string      `json:"permissions,omitempty"`
	Size          int64       `json:"size"` // total bytes of the chunks
	UnpackedSize  int64       `json:"unpacked_size,omitempty"`
	CopySemantics string      `json:"copy_semantics,omitempty"` // "cp-v1"
	SourceName    string      `json:"source_name,omitempty"`
	SourceType    string      `json:"source_type,omitempty"` // "file" or "directory"
	CopyContents  bool        `json:"copy_contents,omitempty"`
	Chunks        []copyChunk `json:"chunks"`
}

// copyChunk is one chunk of a chunked upload, chunks/%06d.chunk in the
// session directory.
type copyChunk struct {
	Index  int    `json:"index"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// sessionPattern is the name of a chunked upload's session directory. It
// is checked before anything is removed, so that a manifest path cannot
// make finalise or abort delete some other directory.
var sessionPattern = regexp.MustCompile(`^\.slicer-upload-[0-9a-fA-F]+$`)

// sessionDir returns the session directory of a manifest path, the
// directory holding it, after checking its name.
func sessionDir(manifest string) (string, error) {
	dir := path.Dir(manifest)
	if !sessionPattern.MatchString(path.Base(dir)) {
		return "", fmt.Errorf("%w: manifest %q is not in a .slicer-upload-<hex> session directory", api.ErrInvalid, manifest)
	}
	return dir, nil
}

// chunkPath is where chunk index of a session is.
func chunkPath(session string, index int) string {
	return path.Join(session, "chunks", fmt.Sprintf("%06d.chunk", index))
}

// check validates a manifest: a known version and mode, a destination,
// chunks numbered 0 to n-1 in order whose sizes add up to Size, and
// SHA-256 digests in hex.
func (m copyManifest) check() error {
	if m.Version != 1 && m.Version != 2 {
		return fmt.Errorf("%w: manifest version %d: want 1 or 2", api.ErrInvalid, m.Version)
	}
	if m.Destination == "" {
		return fmt.Errorf("%w: manifest has no destination", api.ErrInvalid)
	}
	var total int64
	for i, c := range m.Chunks {
		if c.Index != i {
			return fmt.Errorf("%w: manifest chunk %d has index %d: want chunks 0 to %d in order", api.ErrInvalid, i, c.Index, len(m.Chunks)-1)
		}
		if c.Size < 0 || len(c.SHA256) != 64 || strings.Trim(strings.ToLower(c.SHA256), "0123456789abcdef") != "" {
			return fmt.Errorf("%w: manifest chunk %d: want a size and a hex SHA-256", api.ErrInvalid, i)
		}
		total += c.Size
	}
	if total != m.Size {
		return fmt.Errorf("%w: manifest chunks add up to %d bytes, size says %d", api.ErrInvalid, total, m.Size)
	}
	return nil
}

// upload turns a checked manifest into the upload it finalises. uid and
// gid are the command's flags; nil ones come from the manifest (where the
// SDK's NonRootUser, MaxUint32, means the image's default user).
func (m copyManifest) upload(uid, gid *uint32) (upload, error) {
	mode, _, err := copyMode(m.Mode)
	if err != nil || mode == api.CopyModeRecursive {
		return upload{}, fmt.Errorf("%w: manifest mode %q: want binary or tar", api.ErrInvalid, m.Mode)
	}
	if m.CopySemantics != "" && m.CopySemantics != api.CopySemanticsV1 {
		return upload{}, fmt.Errorf("%w: manifest copy_semantics %q: want %q", api.ErrInvalid, m.CopySemantics, api.CopySemanticsV1)
	}
	u := upload{
		tar:        mode == api.CopyModeTar,
		v1:         m.CopySemantics == api.CopySemanticsV1,
		rawPath:    m.Destination,
		sourceName: m.SourceName,
		contents:   m.CopyContents,
		uid:        cmp.Or(uid, manifestID(m.UID)),
		gid:        cmp.Or(gid, manifestID(m.GID)),
		size:       m.Size,
	}
	if u.tar {
		u.size = -1
		if m.UnpackedSize > 0 {
			u.size = m.UnpackedSize
		}
	}
	if err := checkSourceName(u.sourceName); err != nil {
		return upload{}, err
	}
	if err := checkSourceType(m.SourceType, u.tar); err != nil {
		return upload{}, err
	}
	if m.Permissions != "" {
		p, err := parsePermissions(m.Permissions)
		if err != nil {
			return upload{}, err
		}
		u.perm = &p
	}
	return u, nil
}

// manifestID is a manifest's uid or gid; MaxUint32 is nil.
func manifestID(id uint32) *uint32 {
	if id == math.MaxUint32 {
		return nil
	}
	return &id
}
