package testutil

import (
	"bytes"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// postgresReadyTimeout is how long NewPostgres waits for a fresh server to
// accept connections; generous, for a busy machine.
const postgresReadyTimeout = 30 * time.Second

// postgresGlob is where Debian's postgresql-NN packages put the server's
// programs (they are not on PATH).
const postgresGlob = "/usr/lib/postgresql/*/bin"

// PostgresServer is a PostgreSQL server a test started: a fresh cluster in
// a temporary directory, reachable only on a Unix socket there.
type PostgresServer struct {
	// URL reaches its database "postgres" as the superuser "postgres",
	// for pgx: postgres://postgres@/postgres?host=/TMP/DIR.
	URL string
	// Dir holds the socket and, under data/, the cluster.
	Dir string

	cmd      *exec.Cmd
	exited   chan struct{} // closed when cmd has been waited for
	stopOnce sync.Once
}

// PostgresBinDir returns the directory of the newest PostgreSQL server
// programs (initdb and postgres) under /usr/lib/postgresql/*/bin.
func PostgresBinDir() (string, error) {
	dirs, _ := filepath.Glob(postgresGlob)
	var best string
	bestVer := -1
	for _, d := range dirs {
		if !isExecutable(filepath.Join(d, "initdb")) || !isExecutable(filepath.Join(d, "postgres")) {
			continue
		}
		// /usr/lib/postgresql/15/bin: the version is the parent's name.
		v, err := strconv.Atoi(filepath.Base(filepath.Dir(d)))
		if err != nil {
			v = 0
		}
		if v > bestVer {
			best, bestVer = d, v
		}
	}
	if best == "" {
		return "", fmt.Errorf("no PostgreSQL server (initdb and postgres) under %s", postgresGlob)
	}
	return best, nil
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// RequirePostgres returns the directory of the PostgreSQL server programs,
// skipping the test when they are not installed unless CI is set
// (.ci/run installs them through make setup-servers, so there a missing
// server is a failure).
func RequirePostgres(tb testing.TB) string {
	tb.Helper()
	dir, err := PostgresBinDir()
	if err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("PostgreSQL is not installed: %v (make setup-servers installs it; .ci/run runs that)", err)
		}
		tb.Skipf("PostgreSQL is not installed: %v (make setup-servers installs it)", err)
	}
	return dir
}

// StartPostgres starts Debian's PostgreSQL server (initdb and postgres from
// /usr/lib/postgresql/*/bin) on a Unix socket in a temporary directory, with
// fsync off and no TCP listener, stops it and removes its files when the test
// ends, and returns a pgx URL of its database "postgres" as the superuser
// "postgres". It skips the test when PostgreSQL is not installed, unless CI
// is set. Run as root, it runs the server as the "postgres" system user
// (initdb refuses root).
func StartPostgres(tb testing.TB) (url string) {
	tb.Helper()
	RequirePostgres(tb)
	p, err := NewPostgres()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(p.Stop)
	return p.URL
}

// NewPostgres is StartPostgres without a test: the caller must Stop the
// server (for a server shared by a package's tests, from TestMain).
func NewPostgres() (_ *PostgresServer, err error) {
	bin, err := PostgresBinDir()
	if err != nil {
		return nil, err
	}
	// As root, run as the postgres user, which must be able to reach the
	// directory: use /tmp when the temporary directory is not searchable
	// by others.
	var run []string // the command prefix that drops privileges
	var uid, gid = -1, -1
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root, and no postgres user to run PostgreSQL as: %w", err)
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
		runuser, err := exec.LookPath("runuser")
		if err != nil {
			return nil, fmt.Errorf("running as root, and no runuser to run PostgreSQL as postgres: %w", err)
		}
		run = []string{runuser, "-u", "postgres", "--"}
	}
	parent := os.TempDir()
	if uid >= 0 && !searchableByAll(parent) {
		parent = "/tmp"
	}
	dir, err := os.MkdirTemp(parent, "mdsa-pg-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	if uid >= 0 {
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	command := func(name string, args ...string) *exec.Cmd {
		argv := append(slices.Clone(run), filepath.Join(bin, name))
		argv = append(argv, args...)
		c := exec.Command(argv[0], argv[1:]...)
		c.Dir = dir
		c.Env = append(os.Environ(), "LC_ALL=C", "TZ=UTC")
		return c
	}

	initdb := command("initdb", "-D", data, "-U", "postgres", "-A", "trust",
		"-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions")
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}

	logPath := filepath.Join(dir, "postgres.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child holds its own descriptor
	if uid >= 0 {
		if err := logFile.Chown(uid, gid); err != nil {
			return nil, err
		}
	}
	cmd := command("postgres", "-D", data,
		"-c", "listen_addresses=",
		"-c", "unix_socket_directories="+dir,
		"-c", "port=5432",
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
		"-c", "max_connections=100",
		"-c", "shared_buffers=32MB",
		"-c", "logging_collector=off",
		"-c", "log_min_messages=warning",
		"-c", "log_min_error_statement=panic",
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting postgres: %w", err)
	}
	p := &PostgresServer{
		URL: (&url.URL{Scheme: "postgres", User: url.User("postgres"), Path: "/postgres",
			RawQuery: url.Values{"host": {dir}}.Encode()}).String(),
		Dir:    dir,
		cmd:    cmd,
		exited: make(chan struct{}),
	}
	go func() {
		cmd.Wait()
		close(p.exited)
	}()
	defer func() {
		if err != nil {
			p.stop()
		}
	}()

	// Ready when postmaster.pid says so, as pg_ctl -w checks: its eighth
	// line becomes "ready" once the server accepts connections.
	deadline := time.Now().Add(postgresReadyTimeout)
	pidFile := filepath.Join(data, "postmaster.pid")
	for {
		select {
		case <-p.exited:
			return nil, fmt.Errorf("postgres exited at start:\n%s", readTail(logPath))
		default:
		}
		if b, err := os.ReadFile(pidFile); err == nil {
			lines := strings.Split(string(b), "\n")
			if len(lines) >= 8 && strings.TrimSpace(lines[7]) == "ready" {
				return p, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("postgres not ready after %v:\n%s", postgresReadyTimeout, readTail(logPath))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop shuts the server down (immediate shutdown: the cluster is thrown
// away) and removes its directory. Safe to call more than once.
func (p *PostgresServer) Stop() {
	p.stopOnce.Do(func() {
		p.stop()
		os.RemoveAll(p.Dir)
	})
}

// stop ends the server: SIGQUIT to the postmaster (its pid is in
// postmaster.pid: under runuser, cmd is runuser, which exits with it), then
// SIGKILL after a while.
func (p *PostgresServer) stop() {
	pid := 0
	if b, err := os.ReadFile(filepath.Join(p.Dir, "data", "postmaster.pid")); err == nil {
		first, _, _ := strings.Cut(string(b), "\n")
		pid, _ = strconv.Atoi(strings.TrimSpace(first))
	}
	signal := func(sig os.Signal) {
		if pid > 0 {
			if proc, err := os.FindProcess(pid); err == nil && proc.Signal(sig) == nil {
				return // runuser, if any, exits with it
			}
		}
		if p.cmd.Process != nil {
			p.cmd.Process.Signal(sig)
		}
	}
	signal(syscall.SIGQUIT)
	select {
	case <-p.exited:
		return
	case <-time.After(10 * time.Second):
	}
	signal(os.Kill)
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
	}
}

// searchableByAll reports whether every directory from dir up to the root
// lets others through (so that the postgres user reaches a directory made
// in it).
func searchableByAll(dir string) bool {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	for {
		fi, err := os.Stat(dir)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return false
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return true
		}
		dir = parent
	}
}

// readTail returns the end of a log file, for error messages.
func readTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	const keep = 4000
	if len(b) > keep {
		b = b[len(b)-keep:]
	}
	return string(bytes.TrimSpace(b))
}
