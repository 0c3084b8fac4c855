package agent

import (
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/openslicer/openslicer/api"
)

func TestZZManualVM(t *testing.T) {
	w := os.Getenv("AGENT_VM_DIR")
	if w == "" {
		t.Skip("manual")
	}
	sock := filepath.Join(w, "agent.sock")
	os.Remove(sock)
	con := filepath.Join(w, "console.log")
	os.Remove(con)
	start := time.Now()
	q := exec.Command("qemu-system-x86_64", "-M", "microvm,acpi=on", "-accel", "tcg,thread=multi", "-cpu", "max", "-m", "256", "-smp", "1",
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-kernel", "/tmp/k/x/boot/vmlinuz-6.1.0-56-cloud-amd64", "-initrd", filepath.Join(w, "initrd.cpio"),
		"-append", "console=ttyS0 reboot=t panic=-1 quiet mitigations=off tsc=reliable no_timer_check i8042.noaux i8042.nokbd i8042.nopnp i8042.dumbkbd pci=off random.trust_cpu=on 8250.nr_uarts=1 cryptomgr.notests audit=0 nowatchdog noreplace-smp tsc_early_khz=2000 slicer.hostname=testvm",
		"-chardev", "file,id=con0,path="+con, "-serial", "chardev:con0",
		"-drive", "id=disk0,file="+filepath.Join(w, "rootfs.img")+",format=raw,if=none", "-device", "virtio-blk-device,drive=disk0",
		"-device", "virtio-serial-device",
		"-chardev", "socket,id=agent,server=on,wait=off,path="+sock,
		"-device", "virtserialport,chardev=agent,name=slicer.agent")
	q.Stderr = os.Stderr
	if err := q.Start(); err != nil {
		t.Fatal(err)
	}
	qdone := make(chan error, 1)
	go func() { qdone <- q.Wait() }()
	defer func() {
		q.Process.Kill()
		b, _ := os.ReadFile(con)
		t.Logf("console:\n%s", b)
	}()
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	dial := func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}
	log := testLogger(t)
	c := NewClient(dial, log)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("ready after %s", time.Since(start))
	h, err := c.Health(ctx)
	t.Logf("health %+v %v", h, err)

	for _, req := range []*api.ExecRequest{
		{Command: "id"},
		{Command: "sh", Args: []string{"-c", "pwd; hostname; cat /etc/hostname; mount; ls -la /dev/pts /dev/shm; ls /; echo $HOME $USER $PATH"}, UID: ptr(uint32(0))},
		{Command: "nope"},
		{Command: "sh", Args: []string{"-c", "sleep 1 & exit 0"}},
	} {
		res, err := c.ExecBuffered(ctx, req)
		t.Logf("%v: %+v %v", req.Command, res, err)
	}
	// stream with stdin
	pr, pw := io.Pipe()
	body, err := c.Exec(ctx, &api.ExecRequest{Command: "cat", Stdio: "text"}, pr)
	if err != nil {
		t.Fatal(err)
	}
	go func() { io.WriteString(pw, "hello from stdin\n"); pw.Close() }()
	b, _ := io.ReadAll(body)
	t.Logf("stream: %s", b)

	// cancel kills the group
	cctx, ccancel := context.WithCancel(ctx)
	body, err = c.Exec(cctx, &api.ExecRequest{Command: "sleep 300 & sleep 301; wait", Shell: "/bin/sh"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 200)
	n, _ := body.Read(buf)
	t.Logf("first: %s", buf[:n])
	ccancel()
	body.Close()
	time.Sleep(500 * time.Millisecond)
	res, err := c.ExecBuffered(ctx, &api.ExecRequest{Command: "ps", UID: ptr(uint32(0))})
	t.Logf("ps after cancel: %+v %v", res, err)

	// reconnect with a new client
	c.Close()
	time.Sleep(time.Second)
	c2 := NewClient(dial, log)
	rctx, rcancel := context.WithTimeout(ctx, 20*time.Second)
	err = c2.WaitReady(rctx)
	rcancel()
	t.Logf("second client ready: %v", err)
	res, err = c2.ExecBuffered(ctx, &api.ExecRequest{Command: "poweroff", UID: ptr(uint32(0))})
	t.Logf("poweroff: %+v %v", res, err)
	select {
	case err := <-qdone:
		t.Logf("qemu exited: %v after %s", err, time.Since(start))
	case <-time.After(30 * time.Second):
		t.Errorf("qemu still running after poweroff")
	}
	c2.Close()
}
