package enginebench

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Linux /proc parsing, to find and meter the reference server's process.
// Each step is a small function over text or a directory tree so that tests
// run it on fixtures (procRoot is "/proc" in production).

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat. It
// is 100 on every Linux architecture Go supports (the kernel's ABI keeps it
// fixed whatever CONFIG_HZ is).
const clockTicks = 100

// tcpListen is the st column of a listening socket in /proc/net/tcp.
const tcpListen = "0A"

// maxProcFile bounds what is read of one /proc file.
const maxProcFile = 16 << 20

// listeningInodes parses the text of /proc/net/tcp or /proc/net/tcp6 and
// returns the inodes of the sockets listening on port whose local address
// is a loopback or unspecified (any) address, that is the sockets a
// loopback client connecting to port reaches.
func listeningInodes(r io.Reader, port int) ([]uint64, error) {
	var inodes []uint64
	sc := bufio.NewScanner(io.LimitReader(r, maxProcFile))
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	first := true
	for sc.Scan() {
		line := sc.Text()
		if first { // the header: "sl local_address rem_address st ..."
			first = false
			if strings.Contains(line, "local_address") {
				continue
			}
		}
		f := strings.Fields(line)
		if len(f) < 10 {
			continue
		}
		if f[3] != tcpListen {
			continue
		}
		addr, p, err := parseHexAddrPort(f[1])
		if err != nil {
			return nil, err
		}
		if p != port || !(addr.IsLoopback() || addr.IsUnspecified()) {
			continue
		}
		ino, err := strconv.ParseUint(f[9], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("enginebench: /proc/net/tcp: inode %q: %w", f[9], err)
		}
		if ino != 0 {
			inodes = append(inodes, ino)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("enginebench: reading /proc/net/tcp: %w", err)
	}
	return inodes, nil
}

// parseHexAddrPort parses a local_address of /proc/net/tcp{,6}: the address
// as 32-bit words in hex, each in the machine's byte order, then ':' and the
// port in hex, e.g. "0100007F:1F99" for 127.0.0.1:8089 on a little-endian
// machine. IPv4-mapped IPv6 addresses are returned as IPv4.
func parseHexAddrPort(s string) (netip.Addr, int, error) {
	h, ps, ok := strings.Cut(s, ":")
	if !ok || (len(h) != 8 && len(h) != 32) {
		return netip.Addr{}, 0, fmt.Errorf("enginebench: /proc/net/tcp: address %q: want 8 or 32 hex digits, ':' and a port", s)
	}
	raw, err := hex.DecodeString(h)
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("enginebench: /proc/net/tcp: address %q: %w", s, err)
	}
	b := make([]byte, len(raw))
	for i := 0; i < len(raw); i += 4 {
		binary.NativeEndian.PutUint32(b[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	port, err := strconv.ParseUint(ps, 16, 16)
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("enginebench: /proc/net/tcp: port of %q: %w", s, err)
	}
	addr, _ := netip.AddrFromSlice(b)
	return addr.Unmap(), int(port), nil
}

// socketInode parses a /proc/PID/fd link target of a socket, "socket:[N]".
func socketInode(link string) (uint64, bool) {
	s, ok := strings.CutPrefix(link, "socket:[")
	if !ok {
		return 0, false
	}
	s, ok = strings.CutSuffix(s, "]")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

// socketOwner returns the first process under procRoot that has an open
// file descriptor on one of the socket inodes.
func socketOwner(procRoot string, inodes []uint64) (int, error) {
	want := make(map[uint64]bool, len(inodes))
	for _, n := range inodes {
		want[n] = true
	}
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return 0, fmt.Errorf("enginebench: listing %s: %w", procRoot, err)
	}
	unreadable := 0
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		fdDir := filepath.Join(procRoot, e.Name(), "fd")
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) { // a process that exited is not a problem
				unreadable++
			}
			continue
		}
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(fdDir, fd.Name()))
			if err != nil {
				continue
			}
			if n, ok := socketInode(link); ok && want[n] {
				return pid, nil
			}
		}
	}
	if unreadable > 0 {
		return 0, fmt.Errorf("enginebench: no readable process holds the socket (the file descriptors of %d processes could not be read: another user's server?)", unreadable)
	}
	return 0, errors.New("enginebench: no process holds the socket")
}

// listenerPID finds the process listening on the TCP port for loopback
// clients, from procRoot's net/tcp and net/tcp6 and its PID/fd links.
func listenerPID(procRoot string, port int) (int, error) {
	var inodes []uint64
	var readErr error
	for _, name := range []string{"tcp", "tcp6"} {
		path := filepath.Join(procRoot, "net", name)
		f, err := os.Open(path)
		if err != nil {
			readErr = errors.Join(readErr, fmt.Errorf("enginebench: %w", err))
			continue
		}
		ino, err := listeningInodes(f, port)
		f.Close()
		if err != nil {
			return 0, fmt.Errorf("%s: %w", path, err)
		}
		inodes = append(inodes, ino...)
	}
	if len(inodes) == 0 {
		if readErr != nil {
			return 0, readErr
		}
		return 0, fmt.Errorf("enginebench: no socket listens on loopback port %d", port)
	}
	pid, err := socketOwner(procRoot, inodes)
	if err != nil {
		return 0, fmt.Errorf("finding the process listening on port %d: %w", port, err)
	}
	return pid, nil
}

// parseStat parses the text of /proc/PID/stat: the command name (field 2,
// in parentheses, which may itself hold spaces and parentheses) and the CPU
// time, utime + stime (fields 14 and 15, in clock ticks).
func parseStat(stat []byte) (comm string, cpu time.Duration, err error) {
	open := bytes.IndexByte(stat, '(')
	end := bytes.LastIndexByte(stat, ')')
	if open < 0 || end < open {
		return "", 0, errors.New("enginebench: /proc/PID/stat: no command name in parentheses")
	}
	comm = string(stat[open+1 : end])
	f := strings.Fields(string(stat[end+1:]))
	// f[0] is field 3 (state), so field n is f[n-3].
	if len(f) < 13 {
		return "", 0, fmt.Errorf("enginebench: /proc/PID/stat: %d fields after the command name, want at least 13", len(f))
	}
	var ticks [2]uint64
	for i, s := range f[11:13] {
		if ticks[i], err = strconv.ParseUint(s, 10, 63); err != nil {
			return "", 0, fmt.Errorf("enginebench: /proc/PID/stat: field %d %q: %w", 14+i, s, err)
		}
	}
	total := ticks[0] + ticks[1]
	if total > uint64(1<<62)/uint64(time.Second/clockTicks) {
		return "", 0, fmt.Errorf("enginebench: /proc/PID/stat: CPU time %d ticks out of range", total)
	}
	return comm, time.Duration(total) * (time.Second / clockTicks), nil
}

// processStat reads procRoot/PID/stat.
func processStat(procRoot string, pid int) (comm string, cpu time.Duration, err error) {
	path := filepath.Join(procRoot, strconv.Itoa(pid), "stat")
	f, err := os.Open(path)
	if err != nil {
		return "", 0, fmt.Errorf("enginebench: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return "", 0, fmt.Errorf("enginebench: reading %s: %w", path, err)
	}
	comm, cpu, err = parseStat(b)
	if err != nil {
		return "", 0, fmt.Errorf("%s: %w", path, err)
	}
	return comm, cpu, nil
}
