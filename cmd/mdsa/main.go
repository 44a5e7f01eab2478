// Command mdsa is the MDSA command-line interface: ask questions, inspect
// plugins, make synthetic models.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/mdsa-go/mdsa/host"
	"github.com/mdsa-go/mdsa/host/config"
	"github.com/mdsa-go/mdsa/host/plugin"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == plugin.CompileChildArg {
		// A child process that compiles one plugin module (see
		// compileCommand); the parent watches its memory and time.
		os.Exit(plugin.ServeCompileChild(context.Background(), os.Stdin, os.Stdout))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	root, a := newRootApp(os.Stdout, os.Stderr)
	go exitIfStuck(ctx, a)
	err := a.execute(ctx, root)
	stop()
	if err != nil {
		var quiet silentError
		if !errors.As(err, &quiet) {
			fmt.Fprintln(os.Stderr, "mdsa:", err)
		}
		os.Exit(1)
	}
}

// exitGrace is how long a command may take to stop after SIGINT or SIGTERM
// (mdsa serve: its server.shutdown_grace more) before the process exits
// anyway: some work cannot be interrupted (a compilation in wazero, a
// llama.cpp call), and `timeout 60 mdsa plugins test x.wasm` must end.
const exitGrace = 5 * time.Second

// exitIfStuck waits for the first signal, then exits the process on a
// second one or once the command has had its grace.
func exitIfStuck(ctx context.Context, a *app) {
	<-ctx.Done()
	again := make(chan os.Signal, 1)
	signal.Notify(again, os.Interrupt, syscall.SIGTERM)
	select {
	case <-again:
	case <-time.After(exitGrace + time.Duration(a.extraGrace.Load())):
	}
	fmt.Fprintln(os.Stderr, "mdsa: still running after the signal; exiting")
	os.Exit(1)
}

// execute runs the command line. A command run with --json that fails
// writes its error to stdout as JSON too, in one shape for every command:
// {"status": "error", "error": "..."}; the message also goes to stderr.
func (a *app) execute(ctx context.Context, root *cobra.Command) error {
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil || cmd == nil {
		return err
	}
	var quiet silentError
	if errors.As(err, &quiet) {
		return err
	}
	if f := cmd.Flags().Lookup("json"); f != nil && f.Value.String() == "true" {
		return a.jsonFailed(err)
	}
	return err
}

// jsonFailed reports err as JSON on stdout and as text on stderr.
func (a *app) jsonFailed(err error) error {
	_ = writeJSON(a.out, map[string]string{"status": "error", "error": err.Error()})
	fmt.Fprintln(a.errw, "mdsa:", err)
	return silentError{err}
}

// silentError is an error already reported (for example as JSON on stdout).
type silentError struct{ error }

// app holds the global flags and the streams commands write to.
type app struct {
	configPath string
	logLevel   string
	out, errw  io.Writer
	// extraGrace (nanoseconds) lengthens exitGrace for a command that
	// stops gracefully (mdsa serve: server.shutdown_grace).
	extraGrace atomic.Int64
}

func newRoot(out, errw io.Writer) *cobra.Command {
	root, _ := newRootApp(out, errw)
	return root
}

func newRootApp(out, errw io.Writer) (*cobra.Command, *app) {
	a := &app{out: out, errw: errw}
	root := &cobra.Command{
		Use:           "mdsa",
		Short:         "Multi-domain small-language-model orchestration",
		Long:          "mdsa routes each query to a sandboxed WebAssembly domain plugin and answers it with a small local model.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(out)
	root.SetErr(errw)
	root.PersistentFlags().StringVarP(&a.configPath, "config", "c", "", "configuration file (default: ./mdsa.toml if present, else built-in defaults)")
	root.PersistentFlags().StringVar(&a.logLevel, "log-level", "", "override host.log_level: debug, info, warn, error")
	root.AddCommand(a.askCmd(), a.routeCmd(), a.pluginsCmd(), a.modelsCmd(), a.hwCmd(), a.configCmd(), a.versionCmd(), a.benchCmd(), a.serveCmd(), a.kbCmd())
	return root, a
}

// loadConfig reads --config, or ./mdsa.toml, or the defaults.
func (a *app) loadConfig() (config.Config, error) {
	path := a.configPath
	if path == "" {
		if _, err := os.Stat("mdsa.toml"); err == nil {
			path = "mdsa.toml"
		}
	}
	var cfg config.Config
	if path == "" {
		cfg = config.Builtin()
		wd, err := os.Getwd()
		if err != nil {
			return cfg, err
		}
		cfg.SetDir(wd)
		cfg.File = "<defaults>"
		if err := cfg.ApplyEnv(os.LookupEnv); err != nil {
			return cfg, err
		}
	} else {
		var err error
		if cfg, err = config.Load(path); err != nil {
			return cfg, err
		}
	}
	if a.logLevel != "" {
		cfg.Host.LogLevel = a.logLevel
	}
	return cfg, nil
}

func (a *app) logger(cfg config.Config) *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(cfg.Host.LogLevel)); err != nil {
		lvl = slog.LevelWarn
	}
	return slog.New(slog.NewTextHandler(a.errw, &slog.HandlerOptions{Level: lvl}))
}

// openHost loads the configuration and the plugins; plugins that fail to
// load are reported on stderr and left out.
func (a *app) openHost(ctx context.Context, opts ...host.Option) (*host.Host, error) {
	cfg, err := a.loadConfig()
	if err != nil {
		return nil, err
	}
	return a.openHostWith(ctx, cfg, opts...)
}

// openHostWith is openHost with the configuration already loaded.
func (a *app) openHostWith(ctx context.Context, cfg config.Config, opts ...host.Option) (*host.Host, error) {
	opts = append([]host.Option{host.WithLogger(a.logger(cfg)), compileOption()}, opts...)
	h, err := host.New(ctx, cfg, opts...)
	if err != nil {
		return nil, err
	}
	// Plugins that did not load are in the log already (host.New warns).
	return h, nil
}

// compileCommand is how the CLI compiles plugin modules in a child
// process: this program, which serves plugin.CompileChildArg in main. Nil
// when the program's path is unknown (modules then compile in process).
func compileCommand() []string {
	exe, err := os.Executable()
	if err != nil {
		return nil
	}
	return []string{exe}
}

// compileOption gives a host the CLI's compile command.
func compileOption() host.Option { return host.WithCompileCommand(compileCommand()...) }

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}
