package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mdsa-go/mdsa/host"
	"github.com/mdsa-go/mdsa/host/config"
	"github.com/mdsa-go/mdsa/internal/atomicfile"
	"github.com/mdsa-go/mdsa/internal/ociplugins"
)

// registryClient is the OCI client of [plugins.registry]: plain HTTP as
// configured (or forced by a flag), credentials from the named variables.
func registryClient(cfg config.Config, plainHTTP bool) (ociplugins.Client, error) {
	r := cfg.Plugins.Registry
	c := ociplugins.Client{PlainHTTP: r.PlainHTTP || plainHTTP}
	for _, v := range []struct {
		env string
		dst *string
	}{{r.UsernameEnv, &c.Username}, {r.PasswordEnv, &c.Password}} {
		if v.env == "" {
			continue
		}
		val, ok := os.LookupEnv(v.env)
		if !ok {
			return c, fmt.Errorf("plugins.registry in %s names %s, which is not set", cfg.File, v.env)
		}
		*v.dst = val
	}
	return c, nil
}

// registryWatcher returns the watcher of [plugins.registry].refs, which
// installs through the host's checked swap path; nil when there are none.
func registryWatcher(cfg config.Config, h *host.Host, log *slog.Logger) (*ociplugins.Watcher, error) {
	r := cfg.Plugins.Registry
	if len(r.Refs) == 0 {
		return nil, nil
	}
	c, err := registryClient(cfg, false)
	if err != nil {
		return nil, err
	}
	w := &ociplugins.Watcher{Client: c, Poll: r.Poll.Duration, Log: log,
		Install: func(ctx context.Context, name string, wasm []byte) error {
			_, err := h.InstallPlugin(ctx, name, wasm)
			return err
		}}
	for i, s := range r.Refs {
		ref, err := ociplugins.ParseRef(s)
		if err != nil {
			return nil, fmt.Errorf("plugins.registry.refs[%d] in %s: %w", i, cfg.File, err)
		}
		w.Refs = append(w.Refs, ref)
	}
	return w, nil
}

func (a *app) pluginsPushCmd() *cobra.Command {
	var name, version string
	var plainHTTP bool
	cmd := &cobra.Command{
		Use:   "push FILE oci://REGISTRY/REPOSITORY:TAG",
		Short: "Store a plugin in an OCI registry (replicas watching the tag swap it in)",
		Long: `Push a plugin module to an OCI registry as an artifact of type ` + ociplugins.ArtifactType + `, tagged,
and print its digest. Replicas whose [plugins.registry] refs name the tag pull the new digest within
plugins.registry.poll and swap it in through the checked swap path (a version that fails its checks is
refused and the running one keeps serving). The plugin's name is the file's (NAME.wasm), or --name; it
must be the name its manifest declares. Credentials: plugins.registry.username_env and password_env.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := a.loadConfig()
			if err != nil {
				return err
			}
			ref, err := ociplugins.ParseRef(args[1])
			if err != nil {
				return err
			}
			wasm, err := os.ReadFile(args[0])
			if err != nil {
				return fmt.Errorf("plugins push: %w", err)
			}
			if name == "" {
				name = strings.TrimSuffix(filepath.Base(args[0]), ".wasm")
			}
			c, err := registryClient(cfg, plainHTTP)
			if err != nil {
				return err
			}
			ann := map[string]string{}
			if version != "" {
				ann["org.opencontainers.image.version"] = version
			}
			dg, err := c.Push(cmd.Context(), ref, name, wasm, ann)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.out, "pushed %s (%d bytes) to %s\ndigest %s\npin it as oci://%s/%s@%s\n", name, len(wasm), ref, dg, ref.Registry, ref.Repository, dg)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "the plugin's name (default: the file's name without .wasm)")
	f.StringVar(&version, "version", "", "a version to record in the artifact's annotations")
	f.BoolVar(&plainHTTP, "plain-http", false, "talk to the registry without TLS (also plugins.registry.plain_http)")
	return cmd
}

func (a *app) pluginsPullCmd() *cobra.Command {
	var dir string
	var plainHTTP bool
	cmd := &cobra.Command{
		Use:   "pull oci://REGISTRY/REPOSITORY:TAG|@sha256:...",
		Short: "Fetch a plugin from an OCI registry into the plugins directory",
		Long: `Pull a plugin artifact and write it as NAME.wasm into host.plugins_dir (or --dir), atomically, after
checking its digest; a running mdsa serve that watches the directory swaps it in.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := a.loadConfig()
			if err != nil {
				return err
			}
			ref, err := ociplugins.ParseRef(args[0])
			if err != nil {
				return err
			}
			c, err := registryClient(cfg, plainHTTP)
			if err != nil {
				return err
			}
			p, err := c.Pull(cmd.Context(), ref)
			if err != nil {
				return err
			}
			if dir == "" {
				dir = cfg.Resolve(cfg.Host.PluginsDir)
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("plugins pull: %w", err)
			}
			// A plugin kept as NAME/NAME.wasm is replaced where it is.
			out := filepath.Join(dir, p.Name+".wasm")
			if nested := filepath.Join(dir, p.Name, p.Name+".wasm"); fileExists(nested) {
				out = nested
			}
			if err := atomicfile.WriteBytes(out, p.Wasm); err != nil {
				return fmt.Errorf("plugins pull: %w", err)
			}
			fmt.Fprintf(a.out, "pulled %s (%d bytes, %s) into %s\n", p.Name, len(p.Wasm), p.Digest, out)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "directory to write NAME.wasm into (default: host.plugins_dir)")
	f.BoolVar(&plainHTTP, "plain-http", false, "talk to the registry without TLS (also plugins.registry.plain_http)")
	return cmd
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}
