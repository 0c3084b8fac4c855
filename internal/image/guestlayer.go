package image

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"time"

	"github.com/openslicer/openslicer/internal/accounts"
	"github.com/openslicer/openslicer/internal/agent/imageconfig"
	"github.com/openslicer/openslicer/internal/image/unpack"
)

// The guest layer is what the store adds on top of an OCI image's own
// layers when it builds the image's base, applied like one more layer (so
// through the same safe unpacking):
//
//   - /etc/slicer/image.json (imageconfig.Path): the image config's Env,
//     WorkingDir and User, which the guest agent makes the defaults of
//     exec, shell, copies and file-system requests.
//   - When the image has no uid-1000 account, the default user Slicer's
//     programs expect: "ubuntu" (uid 1000, home /home/ubuntu, bash when
//     the image has it, else /bin/sh), with a group of its own where gid
//     1000 is free, a shadow entry without password when the image keeps
//     /etc/shadow, the image's /etc/skel files in its home, and
//     passwordless sudo when the image has /etc/sudoers.d. An image whose
//     "ubuntu" name is taken by another uid gets "slicer" instead (the
//     name Slicer uses on non-Ubuntu images).
//
// Doing it once per image, here, rather than in each guest at boot keeps
// the guest's start-up short and the VM disk exactly the base until the
// guest writes to it.

// defaultUserUID is the uid Slicer's programs expect the default user to
// have.
const defaultUserUID = 1000

// guestLayerTime is the modification time of the files the layer adds, so
// the same image builds the same base.
var guestLayerTime = time.Unix(0, 0)

// accountFiles are the account databases of an image (nil: the file is
// absent) and what guestUser needs to know of the image's tree.
type accountFiles struct {
	Passwd, Group, Shadow []byte
	HasBash               bool
}

// newUser is the default user guestUser adds, and the files it changes.
type newUser struct {
	Name     string
	UID, GID int
	Home     string
	Shell    string
	// Passwd, Group and Shadow are the files' new contents; nil means
	// unchanged.
	Passwd, Group, Shadow []byte
}

// guestUser works out the default user an image without a uid-1000
// account gets; ok is false when the image has one already (or the names
// ubuntu and slicer are both taken, which leaves it to root).
func guestUser(f accountFiles) (u newUser, ok bool) {
	passwd, group := f.Passwd, f.Group
	if passwd == nil { // an image with no accounts at all still has root
		passwd = []byte("root:x:0:0:root:/root:/bin/sh\n")
	}
	if group == nil {
		group = []byte("root:x:0:\n")
	}
	names := map[string]bool{}
	for _, a := range accounts.ParsePasswd(passwd) {
		if a.UID == defaultUserUID {
			return newUser{}, false
		}
		names[a.Name] = true
	}
	switch {
	case !names["ubuntu"]:
		u.Name = "ubuntu"
	case !names["slicer"]:
		u.Name = "slicer"
	default:
		return newUser{}, false
	}
	u.UID, u.GID = defaultUserUID, defaultUserUID
	u.Home, u.Shell = "/home/"+u.Name, "/bin/sh"
	if f.HasBash {
		u.Shell = "/bin/bash"
	}

	// The primary group: the user's own at gid 1000; a group of the same
	// name elsewhere is taken as it is; a gid 1000 taken by another name
	// is shared.
	groups := accounts.ParseGroup(group)
	addGroup := true
	for _, g := range groups {
		if g.Name == u.Name {
			u.GID, addGroup = int(g.GID), false
		}
	}
	if addGroup {
		for _, g := range groups {
			if g.GID == defaultUserUID {
				addGroup = false
			}
		}
	}
	if addGroup {
		u.Group = appendLine(group, fmt.Sprintf("%s:x:%d:", u.Name, u.GID))
	}
	u.Passwd = appendLine(passwd, fmt.Sprintf("%s:x:%d:%d:%s:%s:%s", u.Name, u.UID, u.GID, u.Name, u.Home, u.Shell))
	if f.Shadow != nil {
		// "*": no password to log in with, but not a locked account, so
		// SSH keys work with and without PAM.
		u.Shadow = appendLine(f.Shadow, u.Name+":*:::::::")
	}
	return u, true
}

// appendLine returns data with line added at the end, on a line of its own.
func appendLine(data []byte, line string) []byte {
	out := append([]byte{}, data...)
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, '\n')
	}
	return append(out, line+"\n"...)
}

// guestLayer returns the guest layer of the tree in dir (the flattened
// image, whose entries had the owners and modes in want) as an
// uncompressed tar, and the default user it adds ("" when the image has
// one). An account file it replaces keeps its owner and mode. It reads the tree through an os.Root, so a symlink there
// cannot take it outside; an account file it cannot read as a regular
// file counts as absent.
func guestLayer(dir string, want map[string]unpack.Meta, cfg ExecDefaults) ([]byte, string, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, "", err
	}
	defer root.Close()

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(h *tar.Header, body []byte) error {
		h.ModTime, h.Format = guestLayerTime, tar.FormatPAX
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(body))
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err := tw.Write(body)
		return err
	}
	conf := imageconfig.Config{Env: cfg.Env, WorkingDir: cfg.WorkingDir, User: cfg.User}
	if err := add(&tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(imageconfig.Path, "/"), Mode: 0o644}, conf.Marshal()); err != nil {
		return nil, "", err
	}

	files := accountFiles{
		Passwd:  readRegular(root, "etc/passwd"),
		Group:   readRegular(root, "etc/group"),
		Shadow:  readRegular(root, "etc/shadow"),
		HasBash: isRegular(root, "bin/bash") || isRegular(root, "usr/bin/bash"),
	}
	u, ok := guestUser(files)
	if ok {
		if err := addUserFiles(root, want, u, add); err != nil {
			return nil, "", err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, "", err
	}
	if !ok {
		return buf.Bytes(), "", nil
	}
	return buf.Bytes(), u.Name, nil
}

// addUserFiles writes the account files u changes, its home with the
// image's /etc/skel files, and its sudo rule, to the layer.
func addUserFiles(root *os.Root, want map[string]unpack.Meta, u newUser, add func(*tar.Header, []byte) error) error {
	for _, f := range []struct {
		name string
		data []byte
		mode int64
	}{
		{"etc/passwd", u.Passwd, 0o644},
		{"etc/group", u.Group, 0o644},
		{"etc/shadow", u.Shadow, 0o640},
	} {
		if f.data == nil {
			continue
		}
		h := &tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: f.mode}
		if m, ok := want[f.name]; ok && m.Mode.IsRegular() {
			h.Mode, h.Uid, h.Gid = int64(m.Mode.Perm()), m.UID, m.GID
		}
		if err := add(h, f.data); err != nil {
			return err
		}
	}
	home := strings.TrimPrefix(u.Home, "/")
	if err := add(&tar.Header{Typeflag: tar.TypeDir, Name: home + "/", Mode: 0o755, Uid: u.UID, Gid: u.GID}, nil); err != nil {
		return err
	}
	skel, _ := fs.ReadDir(root.FS(), "etc/skel")
	for _, e := range skel {
		if !e.Type().IsRegular() {
			continue
		}
		data := readRegular(root, "etc/skel/"+e.Name())
		if data == nil {
			continue
		}
		if err := add(&tar.Header{Typeflag: tar.TypeReg, Name: path.Join(home, e.Name()), Mode: 0o644, Uid: u.UID, Gid: u.GID}, data); err != nil {
			return err
		}
	}
	if st, err := root.Stat("etc/sudoers.d"); err == nil && st.IsDir() {
		rule := fmt.Sprintf("%s ALL=(ALL) NOPASSWD:ALL\n", u.Name)
		if err := add(&tar.Header{Typeflag: tar.TypeReg, Name: "etc/sudoers.d/90-slicer-" + u.Name, Mode: 0o440}, []byte(rule)); err != nil {
			return err
		}
	}
	return nil
}

// readRegular returns the content of a regular file in root, or nil.
func readRegular(root *os.Root, name string) []byte {
	st, err := root.Stat(name)
	if err != nil || !st.Mode().IsRegular() {
		return nil
	}
	data, err := root.ReadFile(name)
	if err != nil {
		return nil
	}
	if data == nil {
		data = []byte{}
	}
	return data
}

// isRegular reports whether name is a regular file in root.
func isRegular(root *os.Root, name string) bool {
	st, err := root.Stat(name)
	return err == nil && st.Mode().IsRegular()
}
