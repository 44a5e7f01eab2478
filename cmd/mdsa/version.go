package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"

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
			llama := "not installed (run make setup)"
			if cfg, err := a.loadConfig(); err == nil {
				llama = llamaVersion(benchEngineLibDir(cfg))
			}
			v["llama.cpp"] = llama
			if asJSON {
				return writeJSON(a.out, v)
			}
			fmt.Fprintf(a.out, "mdsa %s (plugin ABI v%d, %s, %s)\n", host.Version, abi.Version, v["go"], v["os_arch"])
			fmt.Fprintf(a.out, "  llama.cpp %s\n", llama)
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

// llamaVersion describes the llama.cpp libraries in dir without loading
// them: the release in libllama's file name and what make setup recorded
// (the npm package version and the build).
func llamaVersion(dir string) string {
	if dir == "" {
		return "not installed (run make setup)"
	}
	libs, _ := filepath.Glob(filepath.Join(dir, "libllama.v*.so"))
	if len(libs) == 0 {
		if _, err := os.Stat(filepath.Join(dir, "libllama.so")); err != nil {
			return "not installed in " + dir + " (run make setup)"
		}
		return "(release unknown) in " + dir
	}
	release := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(libs[0]), "libllama."), ".so")
	desc := release
	if stamps, _ := filepath.Glob(filepath.Join(dir, ".installed-*")); len(stamps) > 0 {
		if b, err := os.ReadFile(stamps[0]); err == nil {
			var pkg, build string
			for _, line := range strings.Split(string(b), "\n") {
				if k, val, ok := strings.Cut(line, "="); ok {
					switch k {
					case "version":
						pkg = val
					case "backend":
						build = val
					}
				}
			}
			if pkg != "" {
				desc += fmt.Sprintf(" (node-llama-cpp %s, %s build)", pkg, build)
			}
		}
	}
	return desc + " in " + dir
}
