package network

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"regexp"
	"strings"
)

// Naming says how a plan's objects are named; see the package comment.
const (
	// NamingLegacy (the zero value) is how plans recorded before instance
	// ids were named: after the hostname alone. Such a VM's objects keep
	// those names while its machine runs; its next start names them anew.
	NamingLegacy = 0
	// NamingInstance puts the daemon's instance id in every name, link
	// alias and table name.
	NamingInstance = 1
)

// instanceRE is the form of an instance id: 8 lowercase hex digits. The
// fixed form keeps table names unambiguous: a legacy table name goes on
// with "vm-" or "group-", never with 8 hex digits and a dash. (A legacy
// namespace "<prefix>-<vm>" could read as another daemon's only if a host
// group were named "<8 hex digits>-vm-…".)
var instanceRE = regexp.MustCompile(`^[0-9a-f]{8}$`)

// CheckInstance reports whether id is a valid instance id.
func CheckInstance(id string) error {
	if !instanceRE.MatchString(id) {
		return fmt.Errorf("network instance id %q: want 8 lowercase hex digits", id)
	}
	return nil
}

// owner names the objects of one daemon: prefix (DefaultPrefix) and the
// instance id of its data directory. An owner with no instance names
// objects as versions before instance ids did (NamingLegacy).
type owner struct {
	prefix   string
	instance string
}

func (o owner) legacy() bool { return o.instance == "" }

// base is "<prefix>-<instance>", or "<prefix>" for legacy names.
func (o owner) base() string {
	if o.legacy() {
		return o.prefix
	}
	return o.prefix + "-" + o.instance
}

// vmTable is the nftables table of an isolated VM.
func (o owner) vmTable(vm string) string { return o.base() + "-vm-" + vm }

// groupTable is the NAT table of a bridge group.
func (o owner) groupTable(group string) string { return o.base() + "-group-" + group }

// netnsName is the name of an isolated VM's namespace under the
// namespace directory.
func (o owner) netnsName(vm string) string {
	if o.legacy() {
		return o.prefix + "-" + vm
	}
	return o.vmTable(vm)
}

// vmAlias is the ifalias of every link of a VM.
func (o owner) vmAlias(vm string) string { return o.aliasBase() + "/vm/" + vm }

// groupAlias is the ifalias of a bridge the daemon created.
func (o owner) groupAlias(group string) string { return o.aliasBase() + "/group/" + group }

func (o owner) aliasBase() string {
	if o.legacy() {
		return o.prefix
	}
	return o.prefix + "/" + o.instance
}

// ruleTag begins the comment of every rule of the owner's tables.
func (o owner) ruleTag() string { return o.aliasBase() }

// vethPrefix begins every host veth name the daemon makes.
const vethPrefix = "slv"

// hostVeth is the host end of an isolated VM's veth pair. Legacy names
// are the hostname. Otherwise the name is "slv" and 12 characters of a
// hash of owner and VM: two daemons whose groups share a name get
// different devices, in 15 bytes (IFNAMSIZ) whatever the hostname's
// length. The link's alias names the VM.
func (o owner) hostVeth(vm string) string {
	if o.legacy() {
		return vm
	}
	sum := sha256.Sum256([]byte(o.prefix + "/" + o.instance + "/vm/" + vm))
	enc := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:])
	return vethPrefix + strings.ToLower(enc[:maxIfName-len(vethPrefix)])
}

// Who made an object, as seen by one owner.
type ownership int

const (
	notSlicer  ownership = iota // no name or alias of this prefix
	mine                        // this owner's (same prefix and instance)
	otherOwner                  // another daemon's: same prefix, another instance
	legacyName                  // this prefix without an instance: an older version's
)

func (w ownership) String() string {
	return [...]string{"not slicer's", "this daemon's", "another daemon's", "an earlier version's"}[w]
}

// object is a name or alias parsed by an owner.
type object struct {
	who      ownership
	instance string // for otherOwner
	kind     string // "vm" or "group"
	name     string // the VM or group
}

// parseAlias reads a link alias: "<prefix>/<instance>/<kind>/<name>", or
// the legacy "<prefix>/<kind>/<name>".
func (o owner) parseAlias(alias string) object {
	rest, ok := strings.CutPrefix(alias, o.prefix+"/")
	if !ok {
		return object{}
	}
	if kind, name, ok := cutKind(rest, "/"); ok {
		return object{who: legacyName, kind: kind, name: name}
	}
	id, rest, ok := strings.Cut(rest, "/")
	if !ok || !instanceRE.MatchString(id) {
		return object{}
	}
	kind, name, ok := cutKind(rest, "/")
	if !ok {
		return object{}
	}
	return object{who: o.whose(id), instance: id, kind: kind, name: name}
}

// parseTable reads an nftables table name: "<prefix>-<instance>-<kind>-<name>",
// or the legacy "<prefix>-<kind>-<name>".
func (o owner) parseTable(table string) object {
	rest, ok := strings.CutPrefix(table, o.prefix+"-")
	if !ok {
		return object{}
	}
	if id, after, ok := strings.Cut(rest, "-"); ok && instanceRE.MatchString(id) {
		if kind, name, ok := cutKind(after, "-"); ok {
			return object{who: o.whose(id), instance: id, kind: kind, name: name}
		}
	}
	if kind, name, ok := cutKind(rest, "-"); ok {
		return object{who: legacyName, kind: kind, name: name}
	}
	return object{}
}

// parseNetNS reads a namespace name: "<prefix>-<instance>-vm-<vm>", or the
// legacy "<prefix>-<vm>".
func (o owner) parseNetNS(name string) object {
	if obj := o.parseTable(name); obj.who != notSlicer && obj.who != legacyName && obj.kind == "vm" {
		return obj
	}
	if vm, ok := strings.CutPrefix(name, o.prefix+"-"); ok && vm != "" {
		return object{who: legacyName, kind: "vm", name: vm}
	}
	return object{}
}

func (o owner) whose(id string) ownership {
	if id == o.instance {
		return mine
	}
	return otherOwner
}

// cutKind splits "vm<sep>name" or "group<sep>name".
func cutKind(s, sep string) (kind, name string, ok bool) {
	for _, k := range []string{"vm", "group"} {
		if name, ok := strings.CutPrefix(s, k+sep); ok && name != "" {
			return k, name, true
		}
	}
	return "", "", false
}
