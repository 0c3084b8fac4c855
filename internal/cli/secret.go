package cli

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/openslicer/openslicer/api"
	"github.com/openslicer/openslicer/client"
)

// defaultSecretPermissions is the mode of a new secret in the guest.
const defaultSecretPermissions = "0600"

// secretOptions are the flags of `slicer secret ...`.
type secretOptions struct {
	*globals
	Name        string
	Literal     string
	File        string
	Permissions string
	UID, GID    *uint32
	Verbose     bool
	JSON        bool
	literalSet  bool
}

func newSecretCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "secret", Aliases: []string{"secrets"}, Short: "Manage secrets synced into VMs", Args: cobra.ArbitraryArgs, RunE: helpOrUnknown}
	addConnFlags(cmd, &g.conn)
	cmd.AddCommand(
		newSecretWriteCmd(g, "create", "Create a secret from stdin, --from-literal or --from-file", runSecretCreate),
		newSecretWriteCmd(g, "update", "Change a secret's value, permissions or owner", runSecretUpdate),
		newSecretListCmd(g),
		newSecretRemoveCmd(g),
	)
	return cmd
}

func newSecretWriteCmd(g *globals, verb, short string, run func(context.Context, *client.Client, *secretOptions) error) *cobra.Command {
	o := &secretOptions{globals: g}
	var uid, gid uint32
	cmd := &cobra.Command{
		Use: verb + " NAME", Short: short, Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Name = args[0]
			o.literalSet = cmd.Flags().Changed("from-literal")
			o.UID, o.GID = ifChanged(cmd, "uid", &uid), ifChanged(cmd, "gid", &gid)
			if verb == "create" && o.Permissions == "" {
				o.Permissions = defaultSecretPermissions
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			return run(cmd.Context(), c, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Literal, "from-literal", "", "the value itself")
	f.StringVar(&o.File, "from-file", "", "read the value from this file")
	f.StringVar(&o.Permissions, "permissions", "", "octal mode of the file in the guest (create default "+defaultSecretPermissions+")")
	f.Uint32Var(&uid, "uid", 0, "owner in the guest (default 0)")
	f.Uint32Var(&gid, "gid", 0, "group in the guest (default 0)")
	cmd.MarkFlagsMutuallyExclusive("from-literal", "from-file")
	return cmd
}

// value returns the secret's value: --from-literal, --from-file, or stdin
// when stdinOK. ok is false when none was given.
func (o *secretOptions) value(stdinOK bool) (b []byte, ok bool, err error) {
	switch {
	case o.literalSet:
		return []byte(o.Literal), true, nil
	case o.File != "":
		b, err = os.ReadFile(o.File)
		if err != nil {
			return nil, false, fmt.Errorf("read secret value: %w", err)
		}
		return b, true, nil
	case !stdinOK || o.io.In == nil:
		return nil, false, nil
	}
	if f, isFile := o.io.In.(*os.File); isFile && isTerminal(f) {
		return nil, false, nil
	}
	b, err = io.ReadAll(o.io.In)
	if err != nil {
		return nil, false, fmt.Errorf("read secret value from stdin: %w", err)
	}
	return b, true, nil
}

func (o *secretOptions) checkPermissions() error {
	if o.Permissions == "" {
		return nil
	}
	_, err := client.ParseMode(o.Permissions)
	return err
}

func runSecretCreate(ctx context.Context, c *client.Client, o *secretOptions) error {
	if err := o.checkPermissions(); err != nil {
		return err
	}
	v, ok, err := o.value(true)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: no value: pipe it to stdin or use --from-literal or --from-file", api.ErrInvalid)
	}
	req := api.CreateSecretRequest{Name: o.Name, Data: base64.StdEncoding.EncodeToString(v), Permissions: o.Permissions}
	if o.UID != nil {
		req.UID = *o.UID
	}
	if o.GID != nil {
		req.GID = *o.GID
	}
	if err := c.CreateSecret(ctx, req); err != nil {
		return err
	}
	fmt.Fprintf(o.io.Out, "Secret %s created\n", o.Name)
	return nil
}

func runSecretUpdate(ctx context.Context, c *client.Client, o *secretOptions) error {
	if err := o.checkPermissions(); err != nil {
		return err
	}
	metaOnly := o.Permissions != "" || o.UID != nil || o.GID != nil
	v, ok, err := o.value(!metaOnly)
	if err != nil {
		return err
	}
	req := api.UpdateSecretRequest{UID: o.UID, GID: o.GID}
	if ok {
		data := base64.StdEncoding.EncodeToString(v)
		req.Data = &data
	}
	if o.Permissions != "" {
		req.Permissions = &o.Permissions
	}
	if req == (api.UpdateSecretRequest{}) {
		return fmt.Errorf("%w: nothing to update: give a value or --permissions, --uid or --gid", api.ErrInvalid)
	}
	if err := c.PatchSecret(ctx, o.Name, req); err != nil {
		return err
	}
	fmt.Fprintf(o.io.Out, "Secret %s updated\n", o.Name)
	return nil
}

func newSecretListCmd(g *globals) *cobra.Command {
	o := &secretOptions{globals: g}
	cmd := &cobra.Command{
		Use: "list", Aliases: []string{"ls"}, Short: "List secrets (names and metadata, never values)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			secrets, err := c.ListSecrets(cmd.Context())
			if err != nil {
				return err
			}
			if o.JSON {
				return writeJSON(o.io.Out, secrets)
			}
			return writeSecretTable(o.io.Out, secrets, o.Verbose, o)
		},
	}
	cmd.Flags().BoolVarP(&o.Verbose, "verbose", "v", false, "add size, permissions, uid and gid")
	cmd.Flags().BoolVar(&o.JSON, "json", false, "print JSON")
	return cmd
}

func writeSecretTable(w io.Writer, secrets []api.Secret, verbose bool, o *secretOptions) error {
	header := []string{"NAME", "MODIFIED"}
	if verbose {
		header = append(header, "SIZE", "PERMISSIONS", "UID", "GID")
	}
	t := newTable(w, header...)
	for _, s := range secrets {
		mod := ""
		if s.ModifiedAt != nil {
			mod = formatTime(*s.ModifiedAt, o.loc)
		}
		row := []string{s.Name, mod}
		if verbose {
			row = append(row, strconv.FormatInt(s.Size, 10), s.Permissions,
				strconv.FormatUint(uint64(s.UID), 10), strconv.FormatUint(uint64(s.GID), 10))
		}
		t.row(row...)
	}
	return t.flush()
}

func newSecretRemoveCmd(g *globals) *cobra.Command {
	o := &secretOptions{globals: g}
	return &cobra.Command{
		Use: "remove NAME", Aliases: []string{"rm", "delete"}, Short: "Remove a secret", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			if err := c.DeleteSecret(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(o.io.Out, "Secret %s removed\n", args[0])
			return nil
		},
	}
}
