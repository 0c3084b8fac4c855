package guest

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/internal/agent"
)

// testPaths puts the server's guest files in a temporary directory; the
// console is a plain file there, and root's home a directory the test's
// user may enter.
func testPaths(t *testing.T) guestPaths {
	dir := t.TempDir()
	p := guestPaths{
		slicerDir:   filepath.Join(dir, "etc", "slicer"),
		userdataLog: filepath.Join(dir, "var", "log", "slicer-userdata.log"),
		console:     filepath.Join(dir, "console"),
		rootHome:    filepath.Join(dir, "root"),
		proc:        "/proc",
		statfsRoot:  "/",
		secretsDir:  filepath.Join(dir, "run", "slicer", "secrets"),
	}
	if err := os.WriteFile(p.console, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(p.rootHome, 0o700); err != nil {
		t.Fatal(err)
	}
	return p
}

// withUser writes a passwd whose uid-1000 account "tester" has its home in
// a temporary directory, and returns the home.
func withUser(t *testing.T, h *harness) string {
	home := filepath.Join(t.TempDir(), "home", "tester")
	if err := os.MkdirAll(home, 0o755); err != nil {
		t.Fatal(err)
	}
	passwd := "root:x:0:0:root:/root:/bin/sh\ntester:x:1000:1000::" + home + ":/bin/sh\n"
	if err := os.WriteFile(filepath.Join(h.srv.etcDir, "passwd"), []byte(passwd), 0o644); err != nil {
		t.Fatal(err)
	}
	return home
}

// readFile returns path's content, failing the test if it cannot be read.
func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// checkHealth checks what health says of userdata.
func checkHealth(t *testing.T, h *harness, wantRan bool, wantCode *int) {
	t.Helper()
	got, err := h.client.Health(context.Background())
	if err != nil {
		t.Fatalf("Health: %v", err)
	}
	if got.UserdataRan != wantRan {
		t.Errorf("health userdata_ran = %v, want %v", got.UserdataRan, wantRan)
	}
	if diff := cmp.Diff(wantCode, got.UserdataExitCode); diff != "" {
		t.Errorf("health userdata_exit_code (-want +got):\n%s", diff)
	}
}

func TestFirstBootRunsUserdataOnce(t *testing.T) {
	withStarters(t, func(t *testing.T, h *harness) {
		withUser(t, h)
		ctx := context.Background()
		p := h.srv.paths
		count := filepath.Join(t.TempDir(), "count")
		script := "echo \"user=$TARGET_USER home=$HOME pwd=$(pwd)\"\necho to-stderr >&2\necho run >> " + count + "\nexit 3\n"

		checkHealth(t, h, false, nil)
		fb := agent.FirstBoot{Userdata: script}
		if err := h.client.FirstBoot(ctx, fb); err != nil {
			t.Fatalf("FirstBoot: %v", err)
		}
		h.srv.fb.runs.Wait()
		checkHealth(t, h, true, ptr(3))

		if got := readFile(t, p.marker()); got != "3\n" {
			t.Errorf("marker = %q, want %q", got, "3\n")
		}
		if fi, err := os.Stat(p.userdataFile()); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("userdata file: %v, %v; want mode 0700", fi, err)
		}
		if got := readFile(t, p.userdataFile()); got != script {
			t.Errorf("userdata file = %q, want the script", got)
		}
		var recorded agent.FirstBoot
		if err := json.Unmarshal([]byte(readFile(t, p.firstBootFile())), &recorded); err != nil || !cmp.Equal(fb, recorded) {
			t.Errorf("firstboot.json = %+v, %v; want %+v", recorded, err, fb)
		}

		wantLine := "user=tester home=" + p.rootHome + " pwd=" + p.rootHome
		log := readFile(t, p.userdataLog)
		for _, want := range []string{wantLine + "\n", "to-stderr\n", "--- userdata exited with code 3\n"} {
			if !strings.Contains(log, want) {
				t.Errorf("userdata log lacks %q:\n%s", want, log)
			}
		}
		console := readFile(t, p.console)
		for _, want := range []string{consolePrefix + wantLine + "\n", consolePrefix + "to-stderr\n"} {
			if !strings.Contains(console, want) {
				t.Errorf("console lacks %q:\n%s", want, console)
			}
		}

		// Again, as after a daemon restart: nothing runs.
		if err := h.client.FirstBoot(ctx, fb); err != nil {
			t.Fatalf("second FirstBoot: %v", err)
		}
		h.srv.fb.runs.Wait()
		if got := readFile(t, count); got != "run\n" {
			t.Errorf("userdata ran %d times, want once", strings.Count(got, "run"))
		}
		checkHealth(t, h, true, ptr(3))
	})
}

func TestFirstBootInterpreter(t *testing.T) {
	tests := []struct {
		name     string
		script   string
		wantCode int
		wantLog  string
	}{
		// With "#!/bin/sh -e" the kernel runs the file and -e stops it at
		// false; run with plain /bin/sh the first line is a comment.
		{"shebang", "#!/bin/sh -e\nfalse\necho reached\n", 1, ""},
		{"no shebang", "# -e is not applied\nfalse\necho reached\n", 0, "reached\n"},
		{"missing interpreter", "#!/nonexistent/interpreter\n", exitNotFound, "--- userdata could not start"},
		{"killed by a signal", "kill -KILL $$\n", 128 + int(syscall.SIGKILL), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			if err := h.client.FirstBoot(context.Background(), agent.FirstBoot{Userdata: tt.script}); err != nil {
				t.Fatalf("FirstBoot: %v", err)
			}
			h.srv.fb.runs.Wait()
			checkHealth(t, h, true, ptr(tt.wantCode))
			log := readFile(t, h.srv.paths.userdataLog)
			if tt.wantLog != "" && !strings.Contains(log, tt.wantLog) {
				t.Errorf("userdata log lacks %q:\n%s", tt.wantLog, log)
			}
			if tt.wantLog == "" && strings.Contains(log, "reached") {
				t.Errorf("userdata went on after false:\n%s", log)
			}
		})
	}
}

func TestFirstBootWhileRunning(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	second := filepath.Join(dir, "second")

	if err := h.client.FirstBoot(ctx, agent.FirstBoot{Userdata: "read line < " + fifo + "\n"}); err != nil {
		t.Fatalf("FirstBoot: %v", err)
	}
	// The script waits on the fifo: it is running.
	checkHealth(t, h, false, nil)
	if err := h.client.FirstBoot(ctx, agent.FirstBoot{Userdata: "touch " + second + "\n"}); err != nil {
		t.Fatalf("FirstBoot while running: %v", err)
	}

	// O_RDWR does not wait for a reader, and keeps the line in the fifo
	// until the script reads it.
	f, err := os.OpenFile(fifo, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("go\n"); err != nil {
		t.Fatal(err)
	}
	h.srv.fb.runs.Wait()
	checkHealth(t, h, true, ptr(0))
	if _, err := os.Stat(second); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the second userdata ran (stat: %v)", err)
	}
}

func TestFirstBootSSHKeys(t *testing.T) {
	const a, b = "ssh-ed25519 AAAA a@host", "ssh-rsa BBBB b@host"
	h := newHarness(t)
	home := withUser(t, h)
	sshDir := filepath.Join(home, ".ssh")
	if err := os.Mkdir(sshDir, 0o755); err != nil { // too open: fixed
		t.Fatal(err)
	}
	keysFile := filepath.Join(sshDir, "authorized_keys")
	if err := os.WriteFile(keysFile, []byte(a+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	if err := h.client.FirstBoot(context.Background(), agent.FirstBoot{SSHKeys: []string{b, a}}); err != nil {
		t.Fatalf("FirstBoot: %v", err)
	}
	// No userdata: done at once, with exit code 0.
	checkHealth(t, h, true, ptr(0))
	if got := readFile(t, h.srv.paths.marker()); got != "0\n" {
		t.Errorf("marker = %q, want %q", got, "0\n")
	}
	if got, want := readFile(t, keysFile), a+"\n"+b+"\n"; got != want {
		t.Errorf("authorized_keys = %q, want %q", got, want)
	}
	for path, mode := range map[string]os.FileMode{sshDir: 0o700, keysFile: 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s has mode %o, want %o", path, fi.Mode().Perm(), mode)
		}
		if os.Geteuid() == 0 {
			if st := fi.Sys().(*syscall.Stat_t); st.Uid != 1000 || st.Gid != 1000 {
				t.Errorf("%s is owned by %d:%d, want 1000:1000", path, st.Uid, st.Gid)
			}
		}
	}

	// Again: the marker is there, so nothing changes.
	if err := h.client.FirstBoot(context.Background(), agent.FirstBoot{SSHKeys: []string{"ssh-ed25519 CCCC c@host"}}); err != nil {
		t.Fatalf("second FirstBoot: %v", err)
	}
	if got, want := readFile(t, keysFile), a+"\n"+b+"\n"; got != want {
		t.Errorf("after a second call authorized_keys = %q, want %q", got, want)
	}
}

func TestFirstBootNamedUser(t *testing.T) {
	h := newHarness(t)
	home := withUser(t, h)
	err := h.client.FirstBoot(context.Background(), agent.FirstBoot{DefaultUser: "ubuntu", SSHKeys: []string{"ssh-ed25519 AAAA"}})
	if !errors.Is(err, api.ErrInvalid) {
		t.Errorf("FirstBoot for a user the image lacks: %v, want %v", err, api.ErrInvalid)
	}
	checkHealth(t, h, false, nil) // nothing done, so it can be retried

	out := filepath.Join(t.TempDir(), "out")
	fb := agent.FirstBoot{DefaultUser: "tester", Userdata: "echo $TARGET_USER > " + out + "\n", SSHKeys: []string{"ssh-ed25519 AAAA"}}
	if err := h.client.FirstBoot(context.Background(), fb); err != nil {
		t.Fatalf("FirstBoot: %v", err)
	}
	h.srv.fb.runs.Wait()
	if got := readFile(t, out); got != "tester\n" {
		t.Errorf("TARGET_USER = %q, want tester", got)
	}
	if got := readFile(t, filepath.Join(home, ".ssh", "authorized_keys")); got != "ssh-ed25519 AAAA\n" {
		t.Errorf("authorized_keys = %q", got)
	}
}

func TestFirstBootLegacyMarker(t *testing.T) {
	h := newHarness(t)
	home := withUser(t, h)
	p := h.srv.paths
	if err := os.MkdirAll(p.slicerDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.marker(), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	checkHealth(t, h, true, nil)

	out := filepath.Join(t.TempDir(), "out")
	fb := agent.FirstBoot{Userdata: "touch " + out + "\n", SSHKeys: []string{"ssh-ed25519 AAAA"}}
	if err := h.client.FirstBoot(context.Background(), fb); err != nil {
		t.Fatalf("FirstBoot: %v", err)
	}
	h.srv.fb.runs.Wait()
	for _, path := range []string{out, filepath.Join(home, ".ssh"), p.firstBootFile()} {
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s exists (stat: %v): first boot ran on a disk that had run it", path, err)
		}
	}
	checkHealth(t, h, true, nil)
}
