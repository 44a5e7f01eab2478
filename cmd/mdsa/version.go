package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/mdsa-go/mdsa/host"
	"github.com/mdsa-go/mdsa/host/config"
	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

func (a *app) versionCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version of mdsa and its main parts",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			v := map[string]any{"mdsa": host.Version, "abi": abi.Version, "go": runtime.Version(),
				"os_arch": runtime.GOOS + "/" + runtime.GOARCH}
			if bi, ok := debug.ReadBuildInfo(); ok {
				for _, d := range bi.Deps {
					switch d.Path {
					case "github.com/tetratelabs/wazero", "github.com/extism/go-sdk", "github.com/hybridgroup/yzma":
						v[d.Path] = d.Version
					}
				}
			}
			if asJSON {
				return writeJSON(a.out, v)
			}
			fmt.Fprintf(a.out, "mdsa %s (plugin ABI v%d, %s, %s)\n", host.Version, abi.Version, v["go"], v["os_arch"])
			for _, k := range []string{"github.com/extism/go-sdk", "github.com/tetratelabs/wazero", "github.com/hybridgroup/yzma"} {
				if s, ok := v[k]; ok {
					fmt.Fprintf(a.out, "  %s %s\n", k, s)
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func (a *app) configCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Work with mdsa.toml"}
	cmd.AddCommand(&cobra.Command{
		Use:   "validate [FILE]",
		Short: "Check a configuration file; errors name the file, line and key",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			path := "mdsa.toml"
			if len(args) == 1 {
				path = args[0]
			} else if a.configPath != "" {
				path = a.configPath
			}
			if _, err := config.Load(path); err != nil {
				return err
			}
			fmt.Fprintf(a.out, "%s: ok\n", path)
			return nil
		},
	})
	return cmd
}
