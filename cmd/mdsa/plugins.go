package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func (a *app) pluginsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "plugins", Short: "Inspect domain plugins"}
	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List the loaded plugins",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			h, err := a.openHost(cmd.Context())
			if err != nil {
				return err
			}
			defer h.Close()
			ps := h.Plugins()
			if asJSON {
				return writeJSON(a.out, ps)
			}
			tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tVERSION\tKEYWORDS\tEXAMPLES\tCAPABILITIES\tDESCRIPTION")
			for _, p := range ps {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\n", p.Name, p.Version, len(p.Keywords), len(p.Examples),
					strings.Join(p.Capabilities, ","), p.Description)
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	var inspectJSON bool
	inspect := &cobra.Command{
		Use:   "inspect NAME",
		Short: "Show everything a plugin declares",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := a.openHost(cmd.Context())
			if err != nil {
				return err
			}
			defer h.Close()
			for _, p := range h.Plugins() {
				if p.Name != args[0] {
					continue
				}
				if inspectJSON {
					return writeJSON(a.out, p)
				}
				w := a.out
				fmt.Fprintf(w, "name:          %s\nversion:       %s\ndescription:   %s\n", p.Name, p.Version, p.Description)
				fmt.Fprintf(w, "file:          %s\nsha256:        %s\n", p.Path, p.SHA256)
				fmt.Fprintf(w, "capabilities:  %s\nhandle export: %v\n", strings.Join(p.Capabilities, ", "), p.HasHandle)
				fmt.Fprintf(w, "model:         tier=%s prefer=%v min_context=%d\n", p.Model.Tier, p.Model.Prefer, p.Model.MinContext)
				g := p.Generation
				fmt.Fprintf(w, "generation:    max_tokens=%d", g.MaxTokens)
				if g.Temperature != nil {
					fmt.Fprintf(w, " temperature=%g", *g.Temperature)
				}
				if g.TopP != nil {
					fmt.Fprintf(w, " top_p=%g", *g.TopP)
				}
				fmt.Fprintf(w, " top_k=%d stop=%q\n", g.TopK, g.Stop)
				fmt.Fprintf(w, "keywords (%d):  %s\n", len(p.Keywords), strings.Join(p.Keywords, ", "))
				fmt.Fprintf(w, "examples (%d):\n", len(p.Examples))
				for _, e := range p.Examples {
					fmt.Fprintf(w, "  - %s\n", e)
				}
				return nil
			}
			return fmt.Errorf("no plugin named %q is loaded (see `mdsa plugins list`)", args[0])
		},
	}
	inspect.Flags().BoolVar(&inspectJSON, "json", false, "print JSON")
	cmd.AddCommand(list, inspect, a.pluginsTestCmd(), a.pluginsNewCmd(), a.pluginsReloadCmd(), a.pluginsPushCmd(), a.pluginsPullCmd())
	return cmd
}
