package pid1

import (
	"path"
)

// The handoff to systemd. When the image boots systemd, PID 1 does what
// the image cannot do without us (mount the root disk, load the virtio
// modules, set the hostname, bring up the network from the kernel command
// line, /etc/hosts), installs the agent as a systemd unit in the VM's disk,
// and execs systemd, which keeps PID 1. systemd starts the unit, whose
// agent (Service) answers the host on the same channel as before; shutdown
// and reboot are then systemd's (poweroff, reboot and the host's power
// requests go through it).
//
// The agent binary is copied from the initramfs to agentBinary on the
// /run tmpfs at every boot, so a disk never keeps an agent older than the
// initramfs it boots with; the unit and its enabling symlink are written
// at every boot too (only when they differ), so a VM whose disk predates
// them, or whose user disabled them, still comes up reachable.

const (
	// initParam on the kernel command line (from a host group's init:)
	// forces the choice: "systemd" hands PID 1 to systemd when the image
	// has it, "agent" keeps the agent as PID 1.
	initParam = "slicer.init"

	sbinInit    = "/sbin/init"
	agentBinary = "/run/slicer/slicer-agent"
	unitName    = "slicer-agent.service"
	unitDir     = "/etc/systemd/system"
	// unitWants is where enabling the unit puts its symlink.
	unitWants = unitDir + "/multi-user.target.wants"
)

// systemdPaths are where images keep systemd, for slicer.init=systemd in
// an image whose /sbin/init is something else.
var systemdPaths = []string{"/lib/systemd/systemd", "/usr/lib/systemd/systemd"}

// chooseInit decides who is PID 1 after boot: it returns the program to
// exec, or "" for the agent to stay. param is slicer.init's value ("" when
// unset); sbinTarget is what /sbin/init resolves to ("" when absent);
// exists reports whether a file exists. Without param, an image whose
// /sbin/init is systemd boots it.
func chooseInit(param, sbinTarget string, exists func(string) bool) (string, error) {
	isSystemd := sbinTarget != "" && path.Base(sbinTarget) == "systemd"
	switch param {
	case "":
		if isSystemd {
			return sbinTarget, nil
		}
		return "", nil
	case "agent":
		return "", nil
	case "systemd":
		if isSystemd {
			return sbinTarget, nil
		}
		for _, p := range systemdPaths {
			if exists(p) {
				return p, nil
			}
		}
		return "", errNoSystemd
	}
	return "", errBadInitParam(param)
}

type initError string

func (e initError) Error() string { return string(e) }

const errNoSystemd = initError(initParam + "=systemd, but the image has no systemd (/sbin/init, " +
	"/lib/systemd/systemd, /usr/lib/systemd/systemd): the agent stays PID 1")

func errBadInitParam(v string) error {
	return initError(initParam + "=" + v + ": want systemd or agent; the agent stays PID 1")
}

// agentUnit is the unit that runs the agent under systemd. It has no
// ordering at all, so it starts as soon as systemd starts jobs: the root
// file system, network, hostname and /run are ready before systemd runs,
// and waiting for local-fs.target cost about 3 s of a 10 s debian create
// under TCG (measured). So userdata, which the agent runs, may start
// before systemd's own early setup (tmpfiles, sysinit.target) is done.
// It is stopped first at shutdown, and restarts if it ever exits. KillMode=process: a restart
// or stop of the agent leaves the commands it started running (they end
// with the system).
func agentUnit() string {
	return `# Written by slicer-agent (OpenSlicer) at every boot; changes are overwritten.
[Unit]
Description=OpenSlicer guest agent
Documentation=https://github.com/openslicer/openslicer
DefaultDependencies=no
Conflicts=shutdown.target
Before=shutdown.target

[Service]
ExecStart=` + agentBinary + ` service
Restart=always
RestartSec=1
KillMode=process
OOMScoreAdjust=-900

[Install]
WantedBy=multi-user.target
`
}
