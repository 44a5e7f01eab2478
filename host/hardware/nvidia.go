package hardware

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os/exec"
	"strconv"
	"strings"

	"github.com/mdsa-go/mdsa/internal/textcap"
)

// ErrNVMLNotFound is returned (wrapped) by an NVMLLoader when the library is
// not installed.
var ErrNVMLNotFound = errors.New("NVML library not found")

// NvidiaSMIArgs are the arguments Detect passes to nvidia-smi; memory is in
// MiB.
var NvidiaSMIArgs = []string{
	"--query-gpu=index,name,memory.total,memory.free,driver_version",
	"--format=csv,noheader,nounits",
}

// maxNvidiaSMIBytes bounds the nvidia-smi output Detect parses.
const maxNvidiaSMIBytes = 1 << 20

// ParseNvidiaSMI reads the output of nvidia-smi with NvidiaSMIArgs: one line
// per GPU, "index, name, total MiB, free MiB, driver". A name may itself
// contain commas. Memory that nvidia-smi reports as "[N/A]" or
// "[Not Supported]" is left 0. Lines that cannot be read are skipped and
// described in the returned problems; err is set only when output has
// lines but none could be read.
func ParseNvidiaSMI(out []byte) (gpus []GPU, problems []string, err error) {
	if len(out) > maxNvidiaSMIBytes {
		out = out[:maxNvidiaSMIBytes]
	}
	lines := 0
	for n, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		lines++
		g, perr := parseNvidiaSMILine(line)
		if perr != nil {
			problems = append(problems, fmt.Sprintf("line %d %q: %v", n+1, textcap.Truncate(line, 120), perr))
			continue
		}
		gpus = append(gpus, g)
	}
	if lines > 0 && len(gpus) == 0 {
		return nil, problems, fmt.Errorf("no line of nvidia-smi output could be read (%s)", strings.Join(problems, "; "))
	}
	return gpus, problems, nil
}

func parseNvidiaSMILine(line string) (GPU, error) {
	f := strings.Split(line, ",")
	if len(f) < 5 {
		return GPU{}, fmt.Errorf("want 5 comma-separated fields (index, name, memory.total, memory.free, driver_version), got %d", len(f))
	}
	for i := range f {
		f[i] = strings.TrimSpace(f[i])
	}
	n := len(f)
	idx, err := strconv.Atoi(f[0])
	if err != nil || idx < 0 {
		return GPU{}, fmt.Errorf("index %q is not a whole number", f[0])
	}
	total, err := mibField(f[n-3])
	if err != nil {
		return GPU{}, fmt.Errorf("memory.total: %w", err)
	}
	free, err := mibField(f[n-2])
	if err != nil {
		return GPU{}, fmt.Errorf("memory.free: %w", err)
	}
	if total > 0 && free > total {
		return GPU{}, fmt.Errorf("memory.free %d MiB exceeds memory.total %d MiB", free>>20, total>>20)
	}
	return GPU{
		Index:          idx,
		Vendor:         VendorNVIDIA,
		Name:           strings.Join(f[1:n-3], ","),
		VRAMTotalBytes: total,
		VRAMFreeBytes:  free,
		Driver:         f[n-1],
		Source:         SourceNvidiaSMI,
	}, nil
}

// mibField parses a MiB amount; "[N/A]"-style values give 0.
func mibField(s string) (int64, error) {
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		return 0, nil
	}
	s = strings.TrimSpace(strings.TrimSuffix(s, "MiB"))
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 || v > 1<<40 {
		return 0, fmt.Errorf("%q is not an amount of MiB", s)
	}
	return v << 20, nil
}

// notInstalled reports whether err means the tool or library is absent.
func notInstalled(err error) bool {
	return errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrNVMLNotFound)
}

// detectNVIDIA asks NVML, then nvidia-smi. found is false when neither is
// installed.
func detectNVIDIA(ctx context.Context, opts Options, w *warnings) (gpus []GPU, found bool, err error) {
	loader := opts.NVML
	if loader == nil && opts.live() {
		loader = loadNVML
	}
	if loader != nil {
		lib, explicit := DefaultNVMLLibrary, false
		if v, ok := opts.env("MDSA_NVML_LIB"); ok && v != "" {
			lib, explicit = v, true
		}
		gpus, problems, err := queryNVML(loader, lib)
		switch {
		case err == nil:
			for _, p := range problems {
				w.add("nvidia: NVML skipped " + p)
			}
			return gpus, true, nil
		case notInstalled(err) && explicit:
			w.add(fmt.Sprintf("nvidia: MDSA_NVML_LIB=%s: %v; trying nvidia-smi", lib, err))
		case notInstalled(err):
			opts.logger().Debug("hardware: no NVML", "lib", lib, "err", err)
		default:
			w.add(fmt.Sprintf("nvidia: NVML (%s): %v; trying nvidia-smi", lib, err))
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}

	run := opts.NvidiaSMI
	if run == nil && opts.live() {
		run = execNvidiaSMI(opts)
	}
	if run == nil {
		return nil, false, nil
	}
	timeout := opts.CommandTimeout
	if timeout <= 0 {
		timeout = DefaultCommandTimeout
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out, rerr := run(cctx, NvidiaSMIArgs)
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	if rerr != nil {
		if notInstalled(rerr) {
			return nil, false, nil
		}
		if errors.Is(cctx.Err(), context.DeadlineExceeded) {
			rerr = fmt.Errorf("no answer within %v: %w", timeout, rerr)
		}
		w.add(fmt.Sprintf("nvidia: nvidia-smi failed: %v; NVIDIA GPUs not detected", rerr))
		return nil, true, nil
	}
	gpus, problems, perr := ParseNvidiaSMI(out)
	if perr != nil {
		w.add(fmt.Sprintf("nvidia: unreadable nvidia-smi output: %v; NVIDIA GPUs not detected", perr))
		return nil, true, nil
	}
	for _, p := range problems {
		w.add("nvidia: skipped nvidia-smi " + p)
	}
	for _, g := range gpus {
		if g.VRAMTotalBytes == 0 {
			w.add(fmt.Sprintf("nvidia: nvidia-smi reports no memory figures for GPU %d (%s); it is not used for offloading", g.Index, g.Name))
		}
	}
	return gpus, true, nil
}

// execNvidiaSMI runs the real nvidia-smi ($MDSA_NVIDIA_SMI or from $PATH).
func execNvidiaSMI(opts Options) NvidiaSMIRunner {
	return func(ctx context.Context, args []string) ([]byte, error) {
		bin := "nvidia-smi"
		if v, ok := opts.env("MDSA_NVIDIA_SMI"); ok && v != "" {
			bin = v
		}
		p, err := exec.LookPath(bin)
		if err != nil {
			return nil, err
		}
		cmd := exec.CommandContext(ctx, p, args...)
		var stderr strings.Builder
		cmd.Stderr = &limitedWriter{w: &stderr, n: 4096}
		out, err := cmd.Output()
		if err != nil {
			if msg := strings.TrimSpace(stderr.String()); msg != "" {
				return out, fmt.Errorf("%s: %w: %s", p, err, msg)
			}
			// nvidia-smi prints its own failures on stdout.
			if msg := strings.TrimSpace(string(out)); msg != "" {
				return out, fmt.Errorf("%s: %w: %s", p, err, textcap.Truncate(msg, 300))
			}
			return out, fmt.Errorf("%s: %w", p, err)
		}
		return out, nil
	}
}

type limitedWriter struct {
	w *strings.Builder
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if room := l.n - l.w.Len(); room > 0 {
		l.w.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// queryNVML lists the GPUs through an NVML library.
func queryNVML(load NVMLLoader, path string) (gpus []GPU, problems []string, err error) {
	lib, err := load(path)
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if cerr := lib.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("nvmlShutdown: %w", cerr)
		}
	}()
	if err := lib.Init(); err != nil {
		return nil, nil, fmt.Errorf("nvmlInit_v2: %w", err)
	}
	n, err := lib.DeviceCount()
	if err != nil {
		return nil, nil, fmt.Errorf("nvmlDeviceGetCount_v2: %w", err)
	}
	driver, err := lib.DriverVersion()
	if err != nil {
		driver = ""
	}
	gpus = []GPU{}
	for i := range n {
		name, total, free, err := lib.Device(i)
		if err != nil {
			problems = append(problems, fmt.Sprintf("device %d: %v", i, err))
			continue
		}
		gpus = append(gpus, GPU{Index: i, Vendor: VendorNVIDIA, Name: name, VRAMTotalBytes: total,
			VRAMFreeBytes: free, Driver: driver, Source: SourceNVML})
	}
	if n > 0 && len(gpus) == 0 {
		return nil, nil, fmt.Errorf("no device could be read: %s", strings.Join(problems, "; "))
	}
	return gpus, problems, nil
}
