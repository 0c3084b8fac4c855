package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// Load reads and parses the config file at path. A missing file returns an
// error wrapping fs.ErrNotExist; anything wrong inside the file is reported
// as joined FieldErrors, all at once.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes data strictly: unknown or duplicate keys and values of the
// wrong type are errors. Every problem is reported, each naming name, line
// and field path. It neither applies defaults nor validates values.
func Parse(name string, data []byte) (*Config, error) {
	cfg, err := parse(name, data)
	if err != nil {
		return nil, err
	}
	return cfg, nil
}

// LoadAndValidate loads path, applies defaults and validates, reporting the
// problems of both steps at once: a misspelt key does not hide a bad value
// elsewhere in the file.
func LoadAndValidate(path, hypervisor string, opts ValidateOptions) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg, perr := parse(path, data)
	if cfg == nil {
		return nil, perr
	}
	ApplyDefaults(cfg, hypervisor)
	if err := errors.Join(perr, Validate(cfg, opts)); err != nil {
		return nil, err
	}
	return cfg, nil
}

// parse decodes data. When the document is readable as a mapping it returns
// the config decoded from every key it understood, together with the
// problems found; cfg is nil only when nothing could be decoded.
func parse(name string, data []byte) (*Config, error) {
	src := &Source{File: name, Lines: map[string]int{}}
	p := &problems{src: src}
	root, err := parseDocument(data)
	if err != nil {
		p.addAt(yamlErrorLine(err, data), "", "%s", yamlErrorText(err))
		return nil, p.err()
	}
	var f File
	d := &decoder{p: p}
	switch {
	case root == nil:
		p.add("", "the file is empty; want a top-level config: mapping")
	case root.Kind != yaml.MappingNode:
		p.addAt(root.Line, "", "want a top-level config: mapping")
	default:
		d.value(root, reflect.ValueOf(&f).Elem(), "")
		if _, ok := src.Lines["config"]; !ok {
			p.addAt(root.Line, "config", "missing; every setting lives under a top-level config: key")
		}
	}
	cfg := f.Config
	cfg.Source = src
	if root == nil || root.Kind != yaml.MappingNode {
		return nil, p.err()
	}
	return &cfg, p.err()
}

// parseDocument returns the root node of the only YAML document in data, or
// nil when data holds no document.
func parseDocument(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, err
	}
	var next yaml.Node
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("yaml: line %d: a second YAML document; want exactly one", next.Line)
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	return doc.Content[0], nil
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): `)

// yamlErrorLine is the line of a yaml syntax error in data. The yaml
// package names it, except for two kinds of error: one on the first line
// (it counts lines from 0 and takes 0 for "unknown"), and a character YAML
// does not allow, which it locates by byte offset only; the line of the
// first such character is found here.
func yamlErrorLine(err error, data []byte) int {
	if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n
	}
	if off := disallowedChar(data); off >= 0 {
		return 1 + bytes.Count(data[:off], []byte("\n"))
	}
	return 1
}

// disallowedChar is the offset of the first byte of data that is not
// UTF-8 or not a character YAML allows (YAML 1.2 c-printable), or -1.
// UTF-16 input (it starts with a byte-order mark) is not looked into.
func disallowedChar(data []byte) int {
	if bytes.HasPrefix(data, []byte{0xff, 0xfe}) || bytes.HasPrefix(data, []byte{0xfe, 0xff}) {
		return -1
	}
	for off, r := range string(data) {
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(string(data[off:]), "\uFFFD"):
			return off
		case r == 0x09, r == 0x0A, r == 0x0D, r >= 0x20 && r <= 0x7E, r == 0x85,
			r >= 0xA0 && r <= 0xD7FF, r >= 0xE000 && r <= 0xFFFD, r >= 0x10000 && r <= 0x10FFFF:
		default:
			return off
		}
	}
	return -1
}

// yamlErrorText is a yaml syntax error without its "yaml: line N:" prefix.
func yamlErrorText(err error) string {
	s := yamlLineRE.ReplaceAllString(err.Error(), "")
	return strings.TrimPrefix(s, "yaml: ")
}

// unsupportedKeys are documented Slicer settings this daemon does not
// implement; naming them says so instead of "unknown key".
// Each is keyed by the type it belongs to.
var unsupportedKeys = map[string]bool{
	"Config.pci": true, "Config.ssh": true, "Config.network_name": true,
	"API.socket": true, "HostGroup.ca": true, "Network.parent": true,
	"HostGroup.share_home": true, "HostGroup.rosetta": true, "HostGroup.sleep_action": true,
}

// decoder walks a yaml.Node tree into Go values by their yaml tags,
// recording each field's line and every problem it meets.
type decoder struct {
	p *problems
}

func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) {
	if _, ok := d.p.src.Lines[path]; !ok && path != "" {
		d.p.src.Lines[path] = n.Line // where it is written, even as an alias
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if isNull(n) {
		return // leave the zero value: nil pointer, empty string, no list
	}
	switch v.Kind() {
	case reflect.Pointer:
		elem := reflect.New(v.Type().Elem())
		d.value(n, elem.Elem(), path)
		v.Set(elem)
	case reflect.Struct:
		d.mapping(n, v, path)
	case reflect.Slice:
		d.sequence(n, v, path)
	default:
		d.scalar(n, v, path)
	}
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.p.add(path, "want a mapping of keys, got %s", describe(n))
		return
	}
	fields := yamlFields(v.Type())
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		key := k.Value
		kpath := join(path, key)
		if k.Kind != yaml.ScalarNode || key == "<<" {
			d.p.addAt(k.Line, path, "keys must be plain names (merge keys << are not supported)")
			continue
		}
		if first, dup := seen[key]; dup {
			d.p.addAt(k.Line, kpath, "duplicate key (first set at line %d)", first)
			continue
		}
		seen[key] = k.Line
		d.p.src.Lines[kpath] = k.Line // a field is cited at its key
		idx, ok := fields[key]
		switch {
		case ok:
			d.value(val, v.Field(idx), kpath)
		case unsupportedKeys[v.Type().Name()+"."+key]:
			d.p.addAt(k.Line, kpath, "not supported by this daemon")
		default:
			d.p.addAt(k.Line, kpath, "unknown key (want one of %s)", strings.Join(sortedKeys(fields), ", "))
		}
	}
}

func (d *decoder) sequence(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.SequenceNode {
		d.p.add(path, "want a list, got %s", describe(n))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		d.value(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
	}
	v.Set(s)
}

func (d *decoder) scalar(n *yaml.Node, v reflect.Value, path string) {
	want := map[reflect.Kind]string{
		reflect.String: "a string",
		reflect.Bool:   "true or false",
		reflect.Int:    "a whole number",
		reflect.Int64:  "a whole number",
	}[v.Kind()]
	if n.Kind != yaml.ScalarNode {
		d.p.add(path, "want %s, got %s", want, describe(n))
		return
	}
	if err := n.Decode(v.Addr().Interface()); err != nil {
		d.p.add(path, "want %s, got %q", want, n.Value)
	}
}

// describe names a node's kind for messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return strconv.Quote(n.Value)
}

// yamlFields maps the yaml key of each field of t to its index.
func yamlFields(t reflect.Type) map[string]int {
	m := map[string]int{}
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name != "" && name != "-" {
			m[name] = i
		}
	}
	return m
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
