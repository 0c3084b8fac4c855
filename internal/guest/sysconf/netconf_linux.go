package sysconf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// nicWait bounds the wait for the NIC to appear once its driver is loaded.
const nicWait = 5 * time.Second

// NetworkUp configures the NIC the kernel command line describes (ip=):
// the address, the link up, the default route, and /etc/resolv.conf. With
// no ip= parameter the VM has no NIC and there is nothing to do.
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
	if err := WaitForFile(filepath.Join("/sys/class/net", c.Device), nicWait); err != nil {
		return err
	}
	if err := setAddress(c); err != nil {
		return err
	}
	if c.Gateway.IsValid() {
		if err := addDefaultRoute(c); err != nil {
			return err
		}
	}
	if len(c.DNS) > 0 {
		if err := os.WriteFile("/etc/resolv.conf", []byte(resolvConf(c.DNS)), 0o644); err != nil {
			return fmt.Errorf("write /etc/resolv.conf: %w", err)
		}
	}
	return nil
}

// setAddress gives the NIC its address and netmask (the kernel adds the
// route to the subnet) and sets it up.
func setAddress(c netConfig) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(c.Device)
	if err != nil {
		return err
	}
	if err := ifr.SetInet4Addr(c.Address.Addr().AsSlice()); err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFADDR, ifr); err != nil {
		return fmt.Errorf("set %s address %s: %w", c.Device, c.Address.Addr(), err)
	}
	mask := net.CIDRMask(c.Address.Bits(), 32)
	if err := ifr.SetInet4Addr(mask); err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFNETMASK, ifr); err != nil {
		return fmt.Errorf("set %s netmask: %w", c.Device, err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("read %s flags: %w", c.Device, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("set %s up: %w", c.Device, err)
	}
	return nil
}

// addDefaultRoute adds "default via gateway dev device" with one netlink
// request.
func addDefaultRoute(c netConfig) error {
	ifc, err := net.InterfaceByName(c.Device)
	if err != nil {
		return err
	}
	gw := c.Gateway.As4()
	var oif [4]byte
	binary.NativeEndian.PutUint32(oif[:], uint32(ifc.Index))
	rtm := []byte{
		unix.AF_INET, 0, 0, 0, // family, dst_len, src_len, tos
		unix.RT_TABLE_MAIN, unix.RTPROT_BOOT, unix.RT_SCOPE_UNIVERSE, unix.RTN_UNICAST,
		0, 0, 0, 0, // flags
	}
	body := append(rtm, rtAttr(unix.RTA_GATEWAY, gw[:])...)
	body = append(body, rtAttr(unix.RTA_OIF, oif[:])...)
	flags := unix.NLM_F_REQUEST | unix.NLM_F_ACK | unix.NLM_F_CREATE | unix.NLM_F_EXCL
	if err := netlinkDo(unix.RTM_NEWROUTE, flags, body); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add default route via %s: %w", c.Gateway, err)
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
