package testutil

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// RedisServer is a redis-server a test started.
type RedisServer struct {
	// URL reaches it: unix:///TMP/redis.sock.
	URL string
	// Socket is the path of its Unix socket.
	Socket string
	cmd    *exec.Cmd
}

// StartRedis starts Debian's redis-server on a Unix socket in a temporary
// directory, with no persistence, and stops it when the test ends. It
// skips the test when redis-server is not installed, unless CI is set
// (.ci/run installs it, so there a missing server is a failure).
func StartRedis(tb testing.TB) *RedisServer {
	tb.Helper()
	bin := serverBinary(tb, "redis-server")
	dir, err := os.MkdirTemp("", "mdsa-redis-")
	if err != nil {
		tb.Fatal(err)
	}
	sock := filepath.Join(dir, "redis.sock")
	cmd := exec.Command(bin, "--port", "0", "--unixsocket", sock, "--unixsocketperm", "700",
		"--dir", dir, "--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		tb.Fatalf("starting redis-server: %v", err)
	}
	r := &RedisServer{URL: "unix://" + sock, Socket: sock, cmd: cmd}
	tb.Cleanup(func() {
		r.Stop()
		os.RemoveAll(dir)
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if err := r.ping(); err == nil {
			return r
		} else if time.Now().After(deadline) {
			tb.Fatalf("redis-server did not answer on %s: %v", sock, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills the server (a Redis that goes away).
func (r *RedisServer) Stop() {
	if r.cmd.Process != nil && r.cmd.ProcessState == nil {
		r.cmd.Process.Kill()
		r.cmd.Wait()
	}
}

// ping sends PING in the inline protocol.
func (r *RedisServer) ping() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", r.Socket)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := fmt.Fprint(c, "PING\r\n"); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

// serverBinary finds a Debian server's program, skipping the test when it
// is not installed unless CI is set (.ci/run installs it through make
// setup-servers, so there a missing one is a failure).
func serverBinary(tb testing.TB, name string) string {
	tb.Helper()
	bin, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("%s is not installed (make setup-servers installs it; .ci/run runs that)", name)
		}
		tb.Skipf("%s is not installed (make setup-servers installs it)", name)
	}
	return bin
}
