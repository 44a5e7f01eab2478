package testutil

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Registry is an OCI registry a test started.
type Registry struct {
	// Host is HOST:PORT on loopback, plain HTTP.
	Host string
	cmd  *exec.Cmd
}

// StartRegistry starts Debian's docker-registry (the CNCF distribution
// server) on a loopback port with storage in a temporary directory, and
// stops it when the test ends. It skips the test when docker-registry is
// not installed, unless CI is set (.ci/run installs it).
func StartRegistry(tb testing.TB) *Registry {
	tb.Helper()
	bin := serverBinary(tb, "docker-registry")
	dir := tb.TempDir()
	// A free port: taken, noted and given back; the registry binds it
	// right after.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	conf := fmt.Sprintf(`version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(dir, "data"), addr)
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(conf), 0o600); err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", cfgPath)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatalf("starting docker-registry: %v", err)
	}
	r := &Registry{Host: addr, cmd: cmd}
	tb.Cleanup(r.Stop)
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := client.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return r
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("docker-registry did not answer on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills the registry.
func (r *Registry) Stop() {
	if r.cmd.Process != nil && r.cmd.ProcessState == nil {
		r.cmd.Process.Kill()
		r.cmd.Wait()
	}
}
