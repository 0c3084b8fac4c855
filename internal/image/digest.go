package image

import (
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
)

// digestInputs is everything the min image is made from. Two builds with
// the same inputs produce the same image, so the digest names the cache
// entry.
type digestInputs struct {
	Format        int    `json:"format"`
	KernelDeb     string `json:"kernel_deb"` // file name: package, version, arch
	KernelDebSize int64  `json:"kernel_deb_size"`
	AgentSHA256   string `json:"agent_sha256"`
	BusyboxSHA256 string `json:"busybox_sha256"`
	BashSHA256    string `json:"bash_sha256"`
}

// digest is the hex sha256 of a fixed rendering of the inputs.
func (in digestInputs) digest() string {
	s := fmt.Sprintf("openslicer image min\nformat %d\nkernel-deb %s\nkernel-deb-size %d\nagent-sha256 %s\nbusybox-sha256 %s\nbash-sha256 %s\n",
		in.Format, in.KernelDeb, in.KernelDebSize, in.AgentSHA256, in.BusyboxSHA256, in.BashSHA256)
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// readInputs gathers the inputs from the files they name.
func readInputs(deb, agent, busybox, bash string) (digestInputs, error) {
	st, err := os.Stat(deb)
	if err != nil {
		return digestInputs{}, err
	}
	in := digestInputs{Format: formatVersion, KernelDeb: filepath.Base(deb), KernelDebSize: st.Size()}
	if in.AgentSHA256, err = sha256File(agent); err != nil {
		return digestInputs{}, fmt.Errorf("agent binary: %w", err)
	}
	if in.BusyboxSHA256, err = sha256File(busybox); err != nil {
		return digestInputs{}, fmt.Errorf("busybox: %w", err)
	}
	if in.BashSHA256, err = sha256File(bash); err != nil {
		return digestInputs{}, fmt.Errorf("bash: %w", err)
	}
	return in, nil
}

// requireStatic checks that path is a statically linked ELF executable:
// the initramfs and the min root filesystem have no dynamic loader.
func requireStatic(path, what, fix string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s %s is not an ELF executable: %w (%s)", what, path, err, fix)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s %s is dynamically linked; the image has no libc (%s)", what, path, fix)
		}
	}
	return nil
}
