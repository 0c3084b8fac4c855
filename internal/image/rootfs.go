package image

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
)

// rootfsSize is the size of the image's ext4 file. It is sparse, and each
// VM's clone is grown to the VM's disk size, so it only has to hold the
// image's own files.
const rootfsSize = 256 << 20

// account is a user with a group of the same name and id.
type account struct {
	Name     string
	ID       int
	Home     string
	Shell    string
	HomeMode fs.FileMode
}

// minAccounts are the users of the min image; ubuntu (uid 1000) is the
// unprivileged user commands run as by default. It is called ubuntu, as in
// Slicer's images, because programs written against Slicer assume that
// name and /home/ubuntu.
var minAccounts = []account{
	{Name: "root", ID: 0, Home: "/root", Shell: "/bin/bash", HomeMode: 0o700},
	{Name: "ubuntu", ID: 1000, Home: "/home/ubuntu", Shell: "/bin/bash", HomeMode: 0o755},
}

func renderPasswd(as []account) string {
	var b strings.Builder
	for _, a := range as {
		fmt.Fprintf(&b, "%s:x:%d:%d:%s:%s:%s\n", a.Name, a.ID, a.ID, a.Name, a.Home, a.Shell)
	}
	return b.String()
}

func renderGroup(as []account) string {
	var b strings.Builder
	for _, a := range as {
		fmt.Fprintf(&b, "%s:x:%d:\n", a.Name, a.ID)
	}
	return b.String()
}

// renderShadow locks every password ("!"): nobody logs in with one; the
// agent runs commands as any user directly.
func renderShadow(as []account) string {
	var b strings.Builder
	for _, a := range as {
		fmt.Fprintf(&b, "%s:!::0:99999:7:::\n", a.Name)
	}
	return b.String()
}

const profile = `export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
if [ "$(id -u)" -eq 0 ]; then PS1='\h:\w# '; else PS1='\u@\h:\w$ '; fi
export PS1
`

const hosts = `127.0.0.1	localhost
::1	localhost ip6-localhost ip6-loopback
`

func osRelease() string {
	return fmt.Sprintf("NAME=\"OpenSlicer min\"\nPRETTY_NAME=\"OpenSlicer min\"\nID=openslicer\nVARIANT_ID=min\nVERSION_ID=%d\n", formatVersion)
}

// parseApplets turns `busybox --list-full` output into the paths of its
// applet links, relative to the root ("usr/bin/awk"). busybox itself is
// left out: it is the file they point to.
func parseApplets(out []byte) ([]string, error) {
	var applets []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		p := strings.TrimSpace(sc.Text())
		if p == "" || p == "bin/busybox" {
			continue
		}
		if err := checkPath(p); err != nil {
			return nil, fmt.Errorf("busybox applet: %w", err)
		}
		applets = append(applets, p)
	}
	if len(applets) == 0 {
		return nil, fmt.Errorf("busybox lists no applets")
	}
	return applets, nil
}

// busyboxApplets asks the busybox binary which applets it has and where
// each belongs.
func busyboxApplets(ctx context.Context, busybox string) ([]string, error) {
	out, err := exec.CommandContext(ctx, busybox, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list-full: %w", busybox, err)
	}
	return parseApplets(out)
}

// rootfsEntries plans the min root filesystem: bash, busybox and its
// applet links, the agent, the account files and the usual directories.
// Parent directories an applet needs (usr/sbin, ...) are added as 0755.
func rootfsEntries(agent, busybox, bash string, applets []string) []entry {
	es := []entry{
		dirEntry("bin", 0o755),
		copyEntry("bin/busybox", 0o755, busybox),
		copyEntry("bin/bash", 0o755, bash),
		dirEntry("usr/local/bin", 0o755),
		copyEntry("usr/local/bin/slicer-agent", 0o755, agent),
		dirEntry("etc", 0o755),
		dirEntry("etc/slicer", 0o755),
		fileEntry("etc/passwd", 0o644, renderPasswd(minAccounts)),
		fileEntry("etc/group", 0o644, renderGroup(minAccounts)),
		fileEntry("etc/shadow", 0o600, renderShadow(minAccounts)),
		fileEntry("etc/hostname", 0o644, "slicer\n"),
		fileEntry("etc/hosts", 0o644, hosts),
		fileEntry("etc/os-release", 0o644, osRelease()),
		fileEntry("etc/profile", 0o644, profile),
		dirEntry("tmp", 0o777|fs.ModeSticky),
	}
	for _, d := range []string{"dev", "proc", "sys", "run", "var", "mnt"} {
		es = append(es, dirEntry(d, 0o755))
	}
	for _, a := range minAccounts {
		home := dirEntry(strings.TrimPrefix(a.Home, "/"), a.HomeMode)
		home.UID, home.GID = a.ID, a.ID
		es = append(es, home)
	}
	for _, a := range applets {
		if a == "bin/bash" {
			continue // the real bash
		}
		es = append(es, symlinkEntry(a, "/bin/busybox"))
	}
	return withParents(es)
}

// withParents inserts a 0755 root-owned directory before the first entry
// under it, for every ancestor that es does not list earlier.
func withParents(es []entry) []entry {
	have := map[string]bool{}
	var out []entry
	var need func(p string)
	need = func(p string) {
		if p == "." || have[p] {
			return
		}
		need(path.Dir(p))
		have[p] = true
		out = append(out, dirEntry(p, 0o755))
	}
	for _, e := range es {
		need(path.Dir(e.Path))
		if have[e.Path] && e.Mode.IsDir() {
			// Listed explicitly after a child forced it in: keep the
			// explicit mode and owner.
			for i := range out {
				if out[i].Path == e.Path {
					out[i] = e
				}
			}
			continue
		}
		have[e.Path] = true
		out = append(out, e)
	}
	return out
}

// ownerFixes returns debugfs commands that set the owner of every entry
// whose staged copy (owned by whoever built it) has a different owner.
// staged maps a path to its staged uid and gid.
func ownerFixes(es []entry, staged map[string][2]int) []string {
	var cmds []string
	for _, e := range es {
		got, want := staged[e.Path], [2]int{e.UID, e.GID}
		if got[0] != want[0] {
			cmds = append(cmds, fmt.Sprintf("set_inode_field /%s uid %d", e.Path, want[0]))
		}
		if got[1] != want[1] {
			cmds = append(cmds, fmt.Sprintf("set_inode_field /%s gid %d", e.Path, want[1]))
		}
	}
	return cmds
}

// stagedOwners reads the owner of every staged entry.
func stagedOwners(dir string, es []entry) (map[string][2]int, error) {
	owners := make(map[string][2]int, len(es))
	for _, e := range es {
		st, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(e.Path)))
		if err != nil {
			return nil, err
		}
		uid, gid, err := fileOwner(st)
		if err != nil {
			return nil, fmt.Errorf("stat %s: %w", e.Path, err)
		}
		owners[e.Path] = [2]int{uid, gid}
	}
	return owners, nil
}

// mkfsArgs are the mkfs.ext4 arguments that turn staging into an ext4 file.
// The UUID and directory hash seed come from the image digest, so the same
// inputs give the same filesystem identity. 4 KiB blocks and the "default"
// usage type (not "small", which mke2fs picks below 512 MiB) suit the
// gigabytes each clone is grown to.
func mkfsArgs(staging, out, digest string) []string {
	return []string{
		"-q", "-F", "-T", "default", "-b", "4096",
		"-L", "slicer-root",
		"-U", uuidFrom(digest, 0),
		"-E", "root_owner=0:0,hash_seed=" + uuidFrom(digest, 32),
		"-d", staging,
		out,
	}
}

// uuidFrom formats 32 hex digits of digest, from off, as a UUID.
func uuidFrom(digest string, off int) string {
	h := digest[off : off+32]
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// buildRootfs stages es in stagingDir and makes the ext4 file out from it.
func buildRootfs(ctx context.Context, es []entry, stagingDir, out, digest string) error {
	if err := os.Mkdir(stagingDir, 0o755); err != nil {
		return err
	}
	if err := stageTree(stagingDir, es); err != nil {
		return err
	}
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	err = f.Truncate(rootfsSize)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	mkfs, err := lookTool("mkfs.ext4", "e2fsprogs")
	if err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, mkfs, mkfsArgs(stagingDir, out, digest)...).CombinedOutput(); err != nil {
		return fmt.Errorf("mkfs.ext4: %w: %s", err, strings.TrimSpace(string(out)))
	}
	owners, err := stagedOwners(stagingDir, es)
	if err != nil {
		return err
	}
	return debugfsWrite(ctx, out, ownerFixes(es, owners))
}

// debugfsWrite runs debugfs commands against the filesystem in image.
// debugfs exits 0 even when a command fails, so anything it prints on
// stderr besides its version banner is an error.
func debugfsWrite(ctx context.Context, image string, cmds []string) error {
	if len(cmds) == 0 {
		return nil
	}
	debugfs, err := lookTool("debugfs", "e2fsprogs")
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, debugfs, "-w", "-f", "-", image)
	cmd.Stdin = strings.NewReader(strings.Join(cmds, "\n") + "\n")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("debugfs -w %s: %w: %s", image, err, strings.TrimSpace(stderr.String()))
	}
	var problems []string
	for _, line := range strings.Split(stderr.String(), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "debugfs ") {
			problems = append(problems, line)
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("debugfs -w %s: %s", image, strings.Join(problems, "; "))
	}
	return nil
}

// lookTool finds a program in PATH or in the sbin directories, which are
// often missing from a non-root PATH; the error names the Debian package.
func lookTool(name, pkg string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found: install it with apt-get install %s", name, pkg)
}
