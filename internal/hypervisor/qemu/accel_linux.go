package qemu

import (
	"bufio"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// KVM ioctls on /dev/kvm: _IO(KVMIO=0xAE, n).
const (
	kvmGetAPIVersion = 0xAE00
	kvmCreateVM      = 0xAE01
)

// kvmHost runs the cheap checks on dev (/dev/kvm) and modules
// (/sys/module). The VM that KVM_CREATE_VM makes is closed at once.
func kvmHost(dev, modules string) KVMHost {
	h := KVMHost{Modules: kvmModules(modules)}
	fd, err := unix.Open(dev, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		h.OpenErr = &fs.PathError{Op: "open", Path: dev, Err: err}
		return h
	}
	defer unix.Close(fd)
	v, err := unix.IoctlRetInt(fd, kvmGetAPIVersion)
	if err != nil {
		h.APIErr = err
		return h
	}
	h.APIVersion = v
	if v != kvmAPIVersion {
		return h
	}
	vm, err := unix.IoctlRetInt(fd, kvmCreateVM)
	if err != nil {
		h.CreateVMErr = err
		return h
	}
	unix.Close(vm)
	return h
}

// probeTailLines is how many lines of a failed probe's output are kept.
const probeTailLines = 8

// runBootProbe boots kernel under accel with probeArgs and waits, at most
// timeout, for the kernel's banner on the serial console. The QEMU process
// is killed and reaped whatever happens; it also dies with the daemon
// (PR_SET_PDEATHSIG), so a probe is never left behind.
func runBootProbe(ctx context.Context, binary, kernel string, accel Accel, timeout time.Duration) BootProbe {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	r, w, err := os.Pipe()
	if err != nil {
		return BootProbe{Why: fmt.Sprintf("pipe: %v", err)}
	}
	defer r.Close()
	cmd := exec.Command(binary, probeArgs(kernel, accel)...)
	cmd.Stdout, cmd.Stderr = w, w // QEMU's own errors too
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	err = cmd.Start()
	w.Close()
	if err != nil {
		return BootProbe{Why: fmt.Sprintf("start %s: %v", binary, err)}
	}
	defer func() {
		// Its own session, so its own process group: kill all of it.
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	}()

	lines := make(chan string)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			select {
			case lines <- strings.TrimRight(sc.Text(), "\r"):
			case <-stop:
				return
			}
		}
	}()

	var tail []string
	fail := func(why string) BootProbe {
		return BootProbe{Took: time.Since(start), Why: why, Output: strings.Join(tail, "\n")}
	}
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				// Output ends when QEMU exits: it failed to start the
				// machine, or the guest stopped before printing.
				werr := cmd.Wait()
				return fail(fmt.Sprintf("qemu exited (%v) before the kernel printed", werr))
			}
			if strings.Contains(line, probeMarker) {
				return BootProbe{OK: true, Took: time.Since(start), Line: strings.TrimSpace(line)}
			}
			if strings.TrimSpace(line) != "" {
				tail = append(tail, line)
				if len(tail) > probeTailLines {
					tail = tail[1:]
				}
			}
		case <-ctx.Done():
			if ctx.Err() == context.DeadlineExceeded {
				return fail(fmt.Sprintf("no kernel line within %s", timeout))
			}
			return fail(ctx.Err().Error())
		}
	}
}

// identify returns the identity of the file at path, false when it cannot
// be read.
func identify(path string) (fileID, bool) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return fileID{}, false
	}
	return fileID{
		Path: path, Dev: st.Dev, Ino: st.Ino, Size: st.Size,
		MtimeNS: st.Mtim.Nano(), CtimeNS: st.Ctim.Nano(),
	}, true
}
