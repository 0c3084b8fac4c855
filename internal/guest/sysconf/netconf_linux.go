package sysconf

import (
	"encoding/binary"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// nicWait bounds the wait for the NIC to appear once its driver is loaded.
const nicWait = 5 * time.Second

// NetworkUp configures the NIC the kernel command line describes (ip=):
// the address, the link up, the default route, and /etc/resolv.conf, as
// an identity request's network does (applyNetwork). With no ip= parameter
// the VM has no NIC and there is nothing to do.
func NetworkUp() error {
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return err
	}
	// The kernel hands unknown parameters to init as environment
	// variables; the guest's processes must not inherit this one.
	os.Unsetenv(ipParam)
	v, ok := KernelParam(string(cmdline), ipParam)
	if !ok {
		return nil
	}
	c, err := parseIPParam(v)
	if err != nil {
		return err
	}
	if err := applyNetwork(c); err != nil {
		return err
	}
	for _, f := range (Identity{Network: &c}).Files(false) {
		if err := writeFile(f.Path, f.Data, os.FileMode(f.Mode)); err != nil {
			return err
		}
	}
	return nil
}

// linkUp sets the interface dev up.
func linkUp(dev string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(dev)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("read %s flags: %w", dev, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("set %s up: %w", dev, err)
	}
	return nil
}

// rtAttr encodes one route attribute, padded to 4 bytes.
func rtAttr(typ uint16, val []byte) []byte {
	n := unix.SizeofRtAttr + len(val)
	b := make([]byte, (n+3)&^3)
	binary.NativeEndian.PutUint16(b[0:2], uint16(n))
	binary.NativeEndian.PutUint16(b[2:4], typ)
	copy(b[unix.SizeofRtAttr:], val)
	return b
}

// netlinkDo sends one rtnetlink request and returns the kernel's answer
// to it as an error (nil for an ACK).
func netlinkDo(typ uint16, flags int, body []byte) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	msg := make([]byte, unix.NLMSG_HDRLEN, unix.NLMSG_HDRLEN+len(body))
	binary.NativeEndian.PutUint32(msg[0:4], uint32(unix.NLMSG_HDRLEN+len(body)))
	binary.NativeEndian.PutUint16(msg[4:6], typ)
	binary.NativeEndian.PutUint16(msg[6:8], uint16(flags))
	binary.NativeEndian.PutUint32(msg[8:12], 1) // sequence
	msg = append(msg, body...)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	buf := make([]byte, 4096)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return err
	}
	if n < unix.NLMSG_HDRLEN+4 || binary.NativeEndian.Uint16(buf[4:6]) != unix.NLMSG_ERROR {
		return fmt.Errorf("unexpected netlink answer of %d bytes", n)
	}
	if code := int32(binary.NativeEndian.Uint32(buf[unix.NLMSG_HDRLEN:])); code != 0 {
		return unix.Errno(-code)
	}
	return nil
}
