package cli

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func TestVersion(t *testing.T) {
	_, srv := newFakeAPI(t)
	run := func(args ...string) (int, string, string) {
		g, out, errOut := testGlobals(nil)
		root := newRoot(g)
		SetBuild(root, "v1.2.3", "f00d")
		root.SetArgs(args)
		return Main(root, g.io), out.String(), errOut.String()
	}
	code, out, errOut := run("version", "--url", srv.URL)
	want := "Client version:  v1.2.3 (f00d)\nServer version:  0.9.0 (abc123)\nServer platform: linux/amd64\nAccelerator:     tcg (this host has no /dev/kvm)\n"
	if code != 0 || out != want {
		t.Errorf("version = %d, %q, stderr %q; want %q", code, out, errOut, want)
	}

	// No daemon is not an error.
	srv.Close()
	code, out, errOut = run("version", "--url", srv.URL)
	if code != 0 || !strings.HasPrefix(out, "Client version:  v1.2.3 (f00d)\nServer:          not available (") || errOut != "" {
		t.Errorf("version without a daemon = %d, %q, %q", code, out, errOut)
	}
}

func TestLogsShortForm(t *testing.T) {
	_, srv := newFakeAPI(t)
	code, out, errOut := runCLI(t, nil, "logs", "web", "--lines", "0", "--url", srv.URL)
	if code != 0 || out != "boot\nready\n" {
		t.Errorf("slicer logs web = %d, %q, stderr %q", code, out, errOut)
	}
}

// TestDocumentedAliases checks that every short form the spec lists (§5)
// reaches the command it stands for.
func TestDocumentedAliases(t *testing.T) {
	g, _, _ := testGlobals(nil)
	root := newRoot(g)
	tests := []struct {
		path []string
		want string // the command path it must reach
	}{
		{[]string{"v", "list"}, "slicer vm list"},
		{[]string{"vm", "ls"}, "slicer vm list"},
		{[]string{"vm", "l"}, "slicer vm list"},
		{[]string{"ls"}, "slicer ls"},
		{[]string{"vm", "launch"}, "slicer vm add"},
		{[]string{"vm", "port-forward"}, "slicer vm forward"},
		{[]string{"shell"}, "slicer shell"},
		{[]string{"cp"}, "slicer cp"},
		{[]string{"bg"}, "slicer bg"},
		{[]string{"logs"}, "slicer logs"},
		{[]string{"version"}, "slicer version"},
		{[]string{"vm", "ready"}, "slicer vm ready"},
	}
	for _, tt := range tests {
		cmd, _, err := root.Find(tt.path)
		if err != nil || cmd.CommandPath() != tt.want {
			t.Errorf("%v reaches %v (%v); want %s", tt.path, path(cmd), err, tt.want)
		}
	}
	// The short forms are the same commands as the vm ones: same flags.
	for _, name := range []string{"shell", "cp", "bg", "logs"} {
		short, _, _ := root.Find([]string{name})
		long, _, _ := root.Find([]string{"vm", name})
		if diff := cmp.Diff(flagNames(long), flagNames(short)); diff != "" {
			t.Errorf("slicer %s and slicer vm %s differ in flags (-vm +short):\n%s", name, name, diff)
		}
	}
}

func path(c *cobra.Command) string {
	if c == nil {
		return "nothing"
	}
	return c.CommandPath()
}

// flagNames lists a command's local and inherited flags.
func flagNames(c *cobra.Command) []string {
	var names []string
	c.LocalFlags().VisitAll(func(f *pflag.Flag) { names = append(names, f.Name) })
	c.InheritedFlags().VisitAll(func(f *pflag.Flag) { names = append(names, f.Name) })
	slices.Sort(names)
	return names
}
