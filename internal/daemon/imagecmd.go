package daemon

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/openslicer/openslicer/internal/image"
	"github.com/openslicer/openslicer/internal/imageref"
)

// imageFlags locate the image cache as `slicer up` would.
type imageFlags struct{ dataDir, imageDir string }

func (f *imageFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.dataDir, "data-dir", "", "data directory of the daemon that uses the images")
	cmd.Flags().StringVar(&f.imageDir, "image-dir", "", "image cache directory (default <data-dir>/images)")
}

// store is the OCI image store under the cache.
func (f imageFlags) store(errOut io.Writer) (*image.Store, error) {
	cwd, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	dir := ResolvePaths(f.dataDir, cwd).Images
	if f.imageDir != "" {
		dir = f.imageDir
	}
	return &image.Store{Dir: filepath.Join(dir, "oci"), Log: newLogger(errOut, false)}, nil
}

// imageCacheCommands are `slicer image pull|list|remove|wipe`. They work on
// the cache directly, so they need no running daemon; a running daemon
// keeps using what it resolved at start until it restarts.
func imageCacheCommands(out, errOut io.Writer) []*cobra.Command {
	var pf, lf, rf, wf imageFlags
	var insecure bool
	pull := &cobra.Command{
		Use:   "pull IMAGE",
		Short: "Pull an OCI image (registry reference, oci:DIR[:REF], oci-archive:FILE, docker-archive:FILE) and build its disk base",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := pf.store(errOut)
			if err != nil {
				return err
			}
			src, err := imageref.Parse(args[0], insecure)
			if err != nil {
				return err
			}
			if src.Kind == imageref.Builtin {
				return fmt.Errorf("%s is built, not pulled: slicer image build %s", src, src)
			}
			s.Progress = image.LineProgress(out)
			if f, ok := out.(*os.File); ok && isTerminal(f) {
				s.Progress = image.BarProgress(out)
			}
			start := time.Now()
			img, err := s.Pull(context.WithoutCancel(cmd.Context()), src.String(), src)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "%s: %s ready in %s (%s)\n", src, short(img.ID), img.Dir, time.Since(start).Round(10*time.Millisecond))
			return nil
		},
	}
	pf.add(pull)
	pull.Flags().BoolVar(&insecure, "insecure", false, "allow plain HTTP and unverified TLS (as insecure_registry: true)")

	list := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the OCI images in the cache",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := lf.store(errOut)
			if err != nil {
				return err
			}
			es, err := s.List(cmd.Context(), nil)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tID\tSIZE\tPULLED\tVMS")
			for _, e := range es {
				name := e.Name
				if name == "" {
					name = "<none>"
				}
				pulled := "-"
				if !e.Pulled.IsZero() {
					pulled = e.Pulled.Local().Format("2006-01-02 15:04:05")
				}
				fmt.Fprintf(tw, "%s\t%s\t%.1fMB\t%s\t%d\n", name, short(e.ID), float64(e.Size)/1e6, pulled, len(e.Users))
			}
			return tw.Flush()
		},
	}
	lf.add(list)

	remove := &cobra.Command{
		Use:     "remove IMAGE|ID...",
		Aliases: []string{"rm"},
		Short:   "Remove images from the cache (refused while a VM disk uses one)",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := rf.store(errOut)
			if err != nil {
				return err
			}
			for _, a := range args {
				if err := s.Remove(cmd.Context(), a, nil); err != nil {
					return err
				}
				fmt.Fprintf(out, "removed %s\n", a)
			}
			return nil
		},
	}
	rf.add(remove)

	wipe := &cobra.Command{
		Use:   "wipe",
		Short: "Remove every OCI image no VM disk uses, and unused layer blobs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := wf.store(errOut)
			if err != nil {
				return err
			}
			removed, kept, err := s.Wipe(cmd.Context(), nil)
			for _, id := range removed {
				fmt.Fprintf(out, "removed %s\n", short(id))
			}
			for _, id := range kept {
				fmt.Fprintf(out, "kept %s (in use)\n", short(id))
			}
			return err
		},
	}
	wf.add(wipe)
	return []*cobra.Command{pull, list, remove, wipe}
}

// buildDebian is `slicer image build debian`.
func buildDebian(ctx context.Context, f imageFlags, packages []string, out, errOut io.Writer) error {
	s, err := f.store(errOut)
	if err != nil {
		return err
	}
	s.Progress = image.LineProgress(out)
	start := time.Now()
	img, err := s.BuildDebian(context.WithoutCancel(ctx), packages, out)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "image debian %s ready in %s, built in %s\n", short(img.ID), img.Dir, time.Since(start).Round(time.Second))
	return nil
}

func short(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
