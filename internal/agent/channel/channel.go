// Package channel names the agent's byte stream, for the two ends that
// must agree on it without sharing anything else: a hypervisor backend,
// which gives the guest the channel (QEMU: a virtio-serial port), and the
// guest agent, which finds it by that name. It imports nothing.
package channel

// PortName is the name of the virtio-serial port that carries the agent's
// channel. The backend sets it as the port's name; the guest reads it from
// /sys/class/virtio-ports/*/name to find the port's device.
const PortName = "slicer.agent"
