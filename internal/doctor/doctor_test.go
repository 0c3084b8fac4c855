package doctor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/openslicer/openslicer/internal/config"
	"github.com/openslicer/openslicer/internal/network"
)

func TestAPICheckTCP(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	api := config.API{BindAddress: "127.0.0.1", Port: port}
	if r := apiCheck(api, ""); r.Status != Fail || !strings.Contains(r.Detail, "cannot listen on 127.0.0.1:"+strconv.Itoa(port)) {
		t.Errorf("port in use: %+v; want FAIL naming the address", r)
	}
	l.Close()
	if r := apiCheck(api, ""); r.Status != OK {
		t.Errorf("free port: %+v; want ok", r)
	}
}

func TestAPICheckSocket(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "api.sock")
	if r := apiCheck(config.API{}, path); r.Status != OK || !strings.HasSuffix(r.Detail, "is free") {
		t.Errorf("absent: %+v; want ok, free", r)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	if r := apiCheck(config.API{}, path); r.Status != Fail || !strings.Contains(r.Detail, "already listens") {
		t.Errorf("live: %+v; want FAIL", r)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	if r := apiCheck(config.API{}, path); r.Status != OK || !strings.Contains(r.Detail, "stale") {
		t.Errorf("stale: %+v; want ok, stale", r)
	}
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if r := apiCheck(config.API{}, file); r.Status != Fail || !strings.Contains(r.Detail, "not a socket") {
		t.Errorf("regular file: %+v; want FAIL", r)
	}
}

func TestDirCheckFindsTheExistingParent(t *testing.T) {
	dir := t.TempDir()
	r := dirCheck("image directory", filepath.Join(dir, "a", "b"))
	if r.Status == Fail || !strings.Contains(r.Detail, "to be created in "+dir) {
		t.Errorf("dirCheck = %+v; want a result about %s", r, dir)
	}
	if r := dirCheck("image directory", dir); strings.Contains(r.Detail, "to be created") {
		t.Errorf("existing dir: %q", r.Detail)
	}
}

// TestRunWithFakes runs every check with the host-specific parts faked:
// the rows come in order, a failing agent lookup and a port in use are
// blockers, the injected accelerator row is used as given, and a probe
// failure on a config without networks only warns.
func TestRunWithFakes(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cfg := config.Default("qemu")
	cfg.API.Port = l.Addr().(*net.TCPAddr).Port
	root := true
	var probed network.ProbeOptions
	dir := t.TempDir()
	rep := Run(context.Background(), Options{
		Config: cfg, ConfigName: "the embedded default",
		DataDir: dir, ImageDir: filepath.Join(dir, "images"),
		FindAgent: func() (string, error) { return "", errors.New("slicer-agent binary not found") },
		Accel:     func(context.Context) Result { return Result{Check: "accelerator", Status: OK, Detail: "injected"} },
		Root:      &root,
		Probe: func(_ context.Context, o network.ProbeOptions) network.Probe {
			probed = o
			return network.Probe{Veth: errors.New("no veth")}
		},
		CheckNetworks: func(context.Context, []config.HostGroup) error {
			t.Error("config networks checked without networks")
			return nil
		},
	})
	var names []string
	byName := map[string]Result{}
	for _, r := range rep.Checks {
		names = append(names, r.Check)
		byName[r.Check] = r
	}
	want := "config qemu accelerator slicer-agent busybox-static e2fsprogs kernel package /dev/net/tun nftables network namespace veth pair bridge config networks data directory image directory api address"
	if strings.Join(names, " ") != want {
		t.Errorf("checks:\n%s\nwant:\n%s", strings.Join(names, " "), want)
	}
	if probed.Tag != "sdoc"+strconv.Itoa(os.Getpid()) {
		t.Errorf("probe tag %q; want sdoc<pid>", probed.Tag)
	}
	for check, status := range map[string]Status{"config": OK, "accelerator": OK, "slicer-agent": Fail, "veth pair": Warn, "bridge": OK, "api address": Fail} {
		if byName[check].Status != status {
			t.Errorf("%s = %+v; want %s", check, byName[check], status)
		}
	}
	if byName["accelerator"].Detail != "injected" {
		t.Errorf("accelerator row %+v is not the injected one", byName["accelerator"])
	}
	if rep.OK {
		t.Error("report OK with blockers")
	}

	var buf bytes.Buffer
	if err := rep.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil || back.OK || len(back.Checks) != len(rep.Checks) {
		t.Errorf("JSON round trip: %v, %+v", err, back)
	}
	buf.Reset()
	if err := rep.WriteTable(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, s := range []string{"CHECK", "slicer-agent", "FAIL", "fix: make build", "slicer up cannot run on this host"} {
		if !strings.Contains(out, s) {
			t.Errorf("table lacks %q:\n%s", s, out)
		}
	}
}
