package enginebench

import (
	"encoding/binary"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The fixtures are what a little-endian machine prints.
func littleEndianOnly(t *testing.T) {
	t.Helper()
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("fixtures are for little-endian machines")
	}
}

// Port 8089 is 1F99; 8090 is 1F9A.
const fixtureTCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F99 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 1111 1 0000000000000000 100 0 0 10 0
   1: 00000000:1F99 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 2222 1 0000000000000000 100 0 0 10 0
   2: 0500000A:1F99 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 3333 1 0000000000000000 100 0 0 10 0
   3: 0100007F:1F99 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 4444 1 0000000000000000 20 4 30 10 -1
   4: 0100007F:1F9A 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 5555 1 0000000000000000 100 0 0 10 0
   5: 0100007F:1F99 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 0 1 0000000000000000 100 0 0 10 0
garbage line
`

const fixtureTCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1F99 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 6666 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000000000000:1F99 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 7777 1 0000000000000000 100 0 0 10 0
   2: 0000000000000000FFFF00000100007F:1F99 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 8888 1 0000000000000000 100 0 0 10 0
   3: 000080FE00000000FF00000001000000:1F99 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 9999 1 0000000000000000 100 0 0 10 0
`

func TestListeningInodes(t *testing.T) {
	littleEndianOnly(t)
	got, err := listeningInodes(strings.NewReader(fixtureTCP), 8089)
	if err != nil {
		t.Fatal(err)
	}
	// 127.0.0.1 and 0.0.0.0 listening; not 10.0.0.5, not an established
	// connection, not port 8090, not inode 0.
	if !slices.Equal(got, []uint64{1111, 2222}) {
		t.Errorf("tcp: got %v, want [1111 2222]", got)
	}
	got, err = listeningInodes(strings.NewReader(fixtureTCP6), 8089)
	if err != nil {
		t.Fatal(err)
	}
	// ::1, ::, ::ffff:127.0.0.1; not a link-local address.
	if !slices.Equal(got, []uint64{6666, 7777, 8888}) {
		t.Errorf("tcp6: got %v, want [6666 7777 8888]", got)
	}
	if got, err := listeningInodes(strings.NewReader(fixtureTCP), 9); err != nil || len(got) != 0 {
		t.Errorf("port 9: %v %v", got, err)
	}
	bad := "sl local_address\n 0: 0100007G:1F99 00000000:0000 0A 0 0 0 0 0 1 1\n"
	if _, err := listeningInodes(strings.NewReader(bad), 8089); err == nil {
		t.Error("bad hex address accepted")
	}
}

func TestParseHexAddrPort(t *testing.T) {
	littleEndianOnly(t)
	for _, c := range []struct {
		in   string
		addr string
		port int
	}{
		{"0100007F:1F99", "127.0.0.1", 8089},
		{"00000000:0050", "0.0.0.0", 80},
		{"0500000A:01BB", "10.0.0.5", 443},
		{"00000000000000000000000001000000:1F99", "::1", 8089},
		{"0000000000000000FFFF00000100007F:0016", "127.0.0.1", 22},
	} {
		a, p, err := parseHexAddrPort(c.in)
		if err != nil || a != netip.MustParseAddr(c.addr) || p != c.port {
			t.Errorf("%s: got %v %d %v, want %s %d", c.in, a, p, err, c.addr, c.port)
		}
	}
	for _, in := range []string{"", "0100007F", "0100007F:", "0100007F:FFFFF", "01007F:1F99", "zz00007F:1F99"} {
		if _, _, err := parseHexAddrPort(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

func TestSocketInode(t *testing.T) {
	for in, want := range map[string]uint64{"socket:[12345]": 12345, "socket:[0]": 0} {
		if n, ok := socketInode(in); !ok || n != want {
			t.Errorf("%q: %d %v", in, n, ok)
		}
	}
	for _, in := range []string{"/dev/null", "pipe:[123]", "socket:[12", "socket:[]", "socket:[-1]", "anon_inode:[eventfd]"} {
		if _, ok := socketInode(in); ok {
			t.Errorf("%q accepted", in)
		}
	}
}

// fakeProc builds a procfs-like tree: net/tcp, net/tcp6, and for each pid
// its fd links and stat.
func fakeProc(t *testing.T, fds map[int][]string, stats map[int]string) string {
	t.Helper()
	root := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "net"), 0o755))
	must(os.WriteFile(filepath.Join(root, "net", "tcp"), []byte(fixtureTCP), 0o644))
	must(os.WriteFile(filepath.Join(root, "net", "tcp6"), []byte(fixtureTCP6), 0o644))
	must(os.MkdirAll(filepath.Join(root, "self"), 0o755)) // not a pid: skipped
	for pid, links := range fds {
		dir := filepath.Join(root, strconv.Itoa(pid), "fd")
		must(os.MkdirAll(dir, 0o755))
		for i, l := range links {
			must(os.Symlink(l, filepath.Join(dir, strconv.Itoa(i))))
		}
	}
	for pid, s := range stats {
		dir := filepath.Join(root, strconv.Itoa(pid))
		must(os.MkdirAll(dir, 0o755))
		must(os.WriteFile(filepath.Join(dir, "stat"), []byte(s), 0o644))
	}
	return root
}

// statLine is a /proc/PID/stat line with the given comm, utime and stime.
func statLine(pid int, comm string, utime, stime int) string {
	return strconv.Itoa(pid) + " (" + comm + ") S 1 4242 4242 0 -1 4194560 2921 0 0 0 " +
		strconv.Itoa(utime) + " " + strconv.Itoa(stime) + " 0 0 20 0 5 0 123456 1000000 2000 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
}

func TestListenerPIDAndCPU(t *testing.T) {
	littleEndianOnly(t)
	root := fakeProc(t,
		map[int][]string{
			100: {"/dev/null", "pipe:[77]", "socket:[4444]"}, // a client connection, not the listener
			200: {"/dev/null", "socket:[9]", "socket:[7777]"},
		},
		map[int]string{200: statLine(200, "llama-server", 250, 50)})
	pid, err := listenerPID(root, 8089)
	if err != nil || pid != 200 {
		t.Fatalf("listenerPID: %d %v, want 200", pid, err)
	}
	if _, err := listenerPID(root, 9); err == nil || !strings.Contains(err.Error(), "port 9") {
		t.Errorf("no listener: %v", err)
	}
	if _, err := listenerPID(root, 8090); err == nil || !strings.Contains(err.Error(), "no process holds") {
		t.Errorf("listener without an owner: %v", err)
	}
	comm, cpu, err := processStat(root, 200)
	if err != nil || comm != "llama-server" || cpu != 3*time.Second {
		t.Fatalf("processStat: %q %v %v, want llama-server 3s", comm, cpu, err)
	}

	// The target finds the process itself, and reads its CPU time.
	tgt, err := NewOpenAITarget(OpenAIOptions{URL: "http://127.0.0.1:8089/v1/", Model: "m", ProcRoot: root})
	if err != nil {
		t.Fatal(err)
	}
	if tgt.PID() != 200 || tgt.Command() != "llama-server" || tgt.CPUNote() != "" || tgt.URL() != "http://127.0.0.1:8089" {
		t.Fatalf("target: pid %d comm %q note %q url %q", tgt.PID(), tgt.Command(), tgt.CPUNote(), tgt.URL())
	}
	if cpu, err := tgt.CPUTime(); err != nil || cpu != 3*time.Second {
		t.Fatalf("CPUTime: %v %v", cpu, err)
	}
	// A given pid that does not exist, a URL not on loopback, nothing on
	// the port: CPU is n/a, with the reason.
	for _, c := range []struct{ url, note string }{
		{"http://localhost:8089", "pid 999"},
		{"http://10.1.2.3:8089", "not on this machine's loopback"},
		{"http://[::1]:9", "port 9"},
	} {
		pid := 0
		if strings.Contains(c.note, "999") {
			pid = 999
		}
		tgt, err := NewOpenAITarget(OpenAIOptions{URL: c.url, PID: pid, ProcRoot: root})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tgt.CPUTime(); err == nil || !strings.Contains(tgt.CPUNote(), c.note) || err.Error() != tgt.CPUNote() {
			t.Errorf("%s: note %q, err %v; want a note with %q", c.url, tgt.CPUNote(), err, c.note)
		}
	}
}

func TestParseStat(t *testing.T) {
	comm, cpu, err := parseStat([]byte(statLine(7, "odd) name (x", 100, 1)))
	if err != nil || comm != "odd) name (x" || cpu != 1010*time.Millisecond {
		t.Fatalf("got %q %v %v", comm, cpu, err)
	}
	for _, bad := range []string{"", "7 comm S 1", "7 (comm) S 1 2 3", "7 (x) S 1 1 1 0 -1 0 0 0 0 0 -5 1 0",
		"7 (x) S 1 1 1 0 -1 0 0 0 0 0 99999999999999999999 1 0"} {
		if _, _, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestListenerPIDLive finds this process listening on a loopback port in
// the real /proc.
func TestListenerPIDLive(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs Linux /proc")
	}
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	p, _ := strconv.Atoi(port)
	pid, err := listenerPID("/proc", p)
	if err != nil {
		t.Skipf("/proc not usable here: %v", err)
	}
	if pid != os.Getpid() {
		t.Fatalf("pid %d, want this process %d", pid, os.Getpid())
	}
	if _, cpu, err := processStat("/proc", pid); err != nil || cpu < 0 {
		t.Fatalf("processStat: %v %v", cpu, err)
	}
}
