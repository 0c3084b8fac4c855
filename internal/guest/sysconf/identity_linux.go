package sysconf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ApplyIdentity makes this system id: first the RNG (so that nothing after
// it, nor anything the guest does next, draws from a state another clone
// of the same memory image shares), then the hostname, the network and
// the files (Identity.Files). Paths are taken under root, "/" in a guest
// (tests give a directory). It stops at the first failure.
func ApplyIdentity(id Identity, root string) error {
	if err := id.Check(); err != nil {
		return err
	}
	if len(id.Entropy) > 0 {
		if err := AddEntropy(id.Entropy); err != nil {
			return err
		}
	}
	oldName, _ := os.Hostname()
	if id.Hostname != "" {
		if err := unix.Sethostname([]byte(id.Hostname)); err != nil {
			return fmt.Errorf("set hostname %q: %w", id.Hostname, err)
		}
	}
	if id.Network != nil {
		if err := applyNetwork(*id.Network); err != nil {
			return err
		}
	}
	fi, err := os.Lstat(under(root, dbusMachineIDFile))
	dbusCopy := err == nil && fi.Mode().IsRegular()
	for _, f := range id.Files(dbusCopy) {
		if err := writeFile(under(root, f.Path), f.Data, os.FileMode(f.Mode)); err != nil {
			return err
		}
	}
	if id.Hostname != "" {
		return renameInHosts(under(root, hostsFile), oldName, id.Hostname)
	}
	return nil
}

// renameInHosts makes the hosts file at path name name where it named
// old (Hosts), writing it only when that changes it. A missing file is
// made.
func renameInHosts(path, old, name string) error {
	cur, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if next := Hosts(string(cur), old, name); next != string(cur) {
		return writeFile(path, next, 0o644)
	}
	return nil
}

// writeFile replaces path with a file holding data, in one step: a
// temporary file beside it, renamed over it (a symbolic link at path is
// replaced, not followed).
func writeFile(path, data string, mode os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".slicer-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, werr := tmp.WriteString(data)
	err = errors.Join(werr, tmp.Chmod(mode), tmp.Close())
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// applyNetwork gives n's device n's MAC, when set, then makes it hold n's
// address alone, up, with n's default route, over rtnetlink (no ip(8)
// needed). Stale addresses go
// first: deleting a primary address takes the secondaries of its subnet
// with it, so the new one is added after. Removing a device's last address
// also drops the routes through it, which is why the default route is
// written last, replacing whichever the device had.
func applyNetwork(n Network) error {
	dev := n.device()
	ifc, err := waitForInterface(dev, nicWait)
	if err != nil {
		return err
	}
	if n.MAC != nil && !bytes.Equal(n.MAC, ifc.HardwareAddr) {
		if err := netlinkDo(unix.RTM_NEWLINK, unix.NLM_F_REQUEST|unix.NLM_F_ACK, linkAddressMessage(ifc.Index, n.MAC)); err != nil {
			return fmt.Errorf("set %s mac %s: %w", dev, n.MAC, err)
		}
	}
	have, err := ipv4Addresses(ifc.Index)
	if err != nil {
		return fmt.Errorf("list %s addresses: %w", dev, err)
	}
	for _, p := range staleAddresses(have, n.Address) {
		if err := netlinkDo(unix.RTM_DELADDR, unix.NLM_F_REQUEST|unix.NLM_F_ACK, addrMessage(ifc.Index, p)); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return fmt.Errorf("remove %s address %s: %w", dev, p, err)
		}
	}
	flags := unix.NLM_F_REQUEST | unix.NLM_F_ACK | unix.NLM_F_CREATE | unix.NLM_F_REPLACE
	if err := netlinkDo(unix.RTM_NEWADDR, flags, addrMessage(ifc.Index, n.Address)); err != nil {
		return fmt.Errorf("set %s address %s: %w", dev, n.Address, err)
	}
	if err := linkUp(dev); err != nil {
		return err
	}
	if n.Gateway.IsValid() {
		if err := netlinkDo(unix.RTM_NEWROUTE, flags, defaultRouteMessage(ifc.Index, n.Gateway)); err != nil {
			return fmt.Errorf("set default route via %s: %w", n.Gateway, err)
		}
	}
	return nil
}

// linkAddressMessage is the body of RTM_NEWLINK that sets the hardware
// address of the interface with index to mac: an ifinfomsg, then
// IFLA_ADDRESS.
func linkAddressMessage(index int, mac net.HardwareAddr) []byte {
	b := make([]byte, unix.SizeofIfInfomsg)
	b[0] = unix.AF_UNSPEC
	binary.NativeEndian.PutUint32(b[4:8], uint32(index))
	return append(b, rtAttr(unix.IFLA_ADDRESS, mac)...)
}

// waitForInterface polls for the network interface dev, which appears
// once its driver has found the device, until timeout passes.
func waitForInterface(dev string, timeout time.Duration) (*net.Interface, error) {
	deadline := time.Now().Add(timeout)
	for {
		ifc, err := net.InterfaceByName(dev)
		if err == nil {
			return ifc, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("network interface %s did not appear within %s: %w", dev, timeout, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ipv4Addresses lists the IPv4 addresses of the interface with index.
func ipv4Addresses(index int) ([]netip.Prefix, error) {
	rib, err := syscall.NetlinkRIB(syscall.RTM_GETADDR, syscall.AF_INET)
	if err != nil {
		return nil, err
	}
	msgs, err := syscall.ParseNetlinkMessage(rib)
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, m := range msgs {
		if m.Header.Type != syscall.RTM_NEWADDR || len(m.Data) < syscall.SizeofIfAddrmsg {
			continue
		}
		bits := int(m.Data[1])
		if int(binary.NativeEndian.Uint32(m.Data[4:8])) != index {
			continue
		}
		attrs, err := syscall.ParseNetlinkRouteAttr(&m)
		if err != nil {
			return nil, err
		}
		for _, a := range attrs {
			if a.Attr.Type == syscall.IFA_LOCAL && len(a.Value) == 4 {
				out = append(out, netip.PrefixFrom(netip.AddrFrom4([4]byte(a.Value)), bits))
			}
		}
	}
	return out, nil
}

// addrMessage is the body of RTM_NEWADDR or RTM_DELADDR for p on the
// interface with index: an ifaddrmsg, then the local, peer and broadcast
// addresses.
func addrMessage(index int, p netip.Prefix) []byte {
	b := make([]byte, unix.SizeofIfAddrmsg)
	b[0], b[1], b[3] = unix.AF_INET, byte(p.Bits()), unix.RT_SCOPE_UNIVERSE
	binary.NativeEndian.PutUint32(b[4:8], uint32(index))
	a := p.Addr().As4()
	b = append(b, rtAttr(unix.IFA_LOCAL, a[:])...)
	b = append(b, rtAttr(unix.IFA_ADDRESS, a[:])...)
	if p.Bits() < 31 {
		bc := broadcast(p).As4()
		b = append(b, rtAttr(unix.IFA_BROADCAST, bc[:])...)
	}
	return b
}

// broadcast is the broadcast address of p's network.
func broadcast(p netip.Prefix) netip.Addr {
	a := p.Addr().As4()
	host := ^uint32(0) >> p.Bits()
	v := binary.BigEndian.Uint32(a[:]) | host
	var out [4]byte
	binary.BigEndian.PutUint32(out[:], v)
	return netip.AddrFrom4(out)
}

// defaultRouteMessage is the body of RTM_NEWROUTE for "default via gw dev
// index" in the main table.
func defaultRouteMessage(index int, gw netip.Addr) []byte {
	g := gw.As4()
	var oif [4]byte
	binary.NativeEndian.PutUint32(oif[:], uint32(index))
	rtm := []byte{
		unix.AF_INET, 0, 0, 0, // family, dst_len, src_len, tos
		unix.RT_TABLE_MAIN, unix.RTPROT_BOOT, unix.RT_SCOPE_UNIVERSE, unix.RTN_UNICAST,
		0, 0, 0, 0, // flags
	}
	body := append(rtm, rtAttr(unix.RTA_GATEWAY, g[:])...)
	return append(body, rtAttr(unix.RTA_OIF, oif[:])...)
}

// AddEntropy mixes data into the kernel's input pool, credited in full
// (RNDADDENTROPY), then has the kernel reseed its RNG from the pool at
// once (RNDRESEEDCRNG) rather than at its next scheduled reseed. Both need
// CAP_SYS_ADMIN.
func AddEntropy(data []byte) error {
	f, err := os.OpenFile("/dev/urandom", os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	info := randPoolInfo(data)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.RNDADDENTROPY, uintptr(unsafe.Pointer(&info[0])))
	runtime.KeepAlive(info)
	if errno != 0 {
		return fmt.Errorf("add entropy: %w", errno)
	}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.RNDRESEEDCRNG, 0); errno != 0 {
		return fmt.Errorf("reseed the kernel's RNG: %w", errno)
	}
	return nil
}

// randPoolInfo is struct rand_pool_info for data: the entropy credited in
// bits, the buffer's size in bytes, then the bytes.
func randPoolInfo(data []byte) []byte {
	b := make([]byte, 8+len(data))
	binary.NativeEndian.PutUint32(b[0:4], uint32(len(data)*8))
	binary.NativeEndian.PutUint32(b[4:8], uint32(len(data)))
	copy(b[8:], data)
	return b
}
