package hardware

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mdsa-go/mdsa/internal/bytesize"
)

const (
	kib = int64(1024)
	mib = 1024 * kib
	gib = 1024 * mib
)

func TestDetectNoGPU(t *testing.T) {
	info := detect(t, Options{}, "base")
	c := info.CPU
	if c.Cores != 8 || c.Threads != 16 || c.Packages != 1 {
		t.Errorf("cores/threads/packages = %d/%d/%d, want 8/16/1", c.Cores, c.Threads, c.Packages)
	}
	if c.Vendor != "GenuineIntel" || !strings.Contains(c.Model, "Xeon(R) Gold 6338N") {
		t.Errorf("vendor %q model %q", c.Vendor, c.Model)
	}
	for _, f := range []string{"avx", "avx2", "avx512f", "avx512_vnni", "avx512bw", "fma", "f16c", "sse3"} {
		if !c.HasFlag(f) {
			t.Errorf("flag %s missing from %v", f, c.Flags)
		}
	}
	for _, f := range []string{"pni", "sse", "avx512dq", "neon", "amx_tile"} {
		if c.HasFlag(f) {
			t.Errorf("flag %s should not be reported (%v)", f, c.Flags)
		}
	}
	if !slices.IsSorted(c.Flags) {
		t.Errorf("flags not sorted: %v", c.Flags)
	}
	if c.QuotaCPUs != 0 {
		t.Errorf("quota = %v, want none (cpu.max is \"max\")", c.QuotaCPUs)
	}

	m := info.Memory
	if m.TotalBytes != 65843200*kib || m.AvailableBytes != 48*gib || m.HostAvailableBytes != 48*gib {
		t.Errorf("memory = %+v", m)
	}
	if m.CgroupLimitBytes != 0 || m.CgroupVersion != 0 {
		t.Errorf("cgroup memory.max is \"max\" but got limit %d (v%d)", m.CgroupLimitBytes, m.CgroupVersion)
	}

	if len(info.NUMA) != 1 {
		t.Fatalf("numa = %+v, want 1 node", info.NUMA)
	}
	if n := info.NUMA[0]; n.ID != 0 || n.Cores != 8 || n.Threads != 16 || n.MemoryBytes != 65843200*kib {
		t.Errorf("numa node = %+v", n)
	}
	if len(info.GPUs) != 0 {
		t.Errorf("gpus = %+v, want none", info.GPUs)
	}
	if len(info.Warnings) != 0 {
		t.Errorf("warnings on a complete snapshot: %q", info.Warnings)
	}

	// The JSON shape scripts rely on.
	b, err := json.Marshal(info)
	if err != nil {
		t.Fatal(err)
	}
	var generic map[string]any
	if err := json.Unmarshal(b, &generic); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"cpu.cores", "cpu.threads", "cpu.flags", "memory.total_bytes", "memory.available_bytes"} {
		obj, key, _ := strings.Cut(path, ".")
		if _, ok := generic[obj].(map[string]any)[key]; !ok {
			t.Errorf("JSON lacks %s: %s", path, b)
		}
	}
	if g, ok := generic["gpus"].([]any); !ok || len(g) != 0 {
		t.Errorf("gpus must be an empty JSON array, got %v", generic["gpus"])
	}
}

func TestDetectCgroupV2Limit(t *testing.T) {
	info := detect(t, Options{}, "base", "cgroup-v2")
	m := info.Memory
	if m.CgroupVersion != 2 || m.CgroupLimitBytes != 8*gib {
		t.Fatalf("cgroup = v%d limit %d, want v2 8 GiB", m.CgroupVersion, m.CgroupLimitBytes)
	}
	// usage 2 GiB minus 512 MiB of inactive file cache.
	if m.CgroupUsageBytes != 1536*mib {
		t.Errorf("usage = %d, want 1.5 GiB", m.CgroupUsageBytes)
	}
	if m.AvailableBytes != 8*gib-1536*mib {
		t.Errorf("available = %s, want 6.5 GiB (limit minus usage, below MemAvailable)", bytesize.Format(m.AvailableBytes))
	}
	if m.HostAvailableBytes != 48*gib || m.TotalBytes != 65843200*kib {
		t.Errorf("host figures changed: %+v", m)
	}
	if info.CPU.QuotaCPUs != 4 {
		t.Errorf("cpu quota = %v, want 4", info.CPU.QuotaCPUs)
	}
	if r := Recommend(info, nil, RecommendOptions{}); r.Threads != 4 {
		t.Errorf("threads = %d, want 4 (8 cores capped by the quota)", r.Threads)
	}
}

func TestDetectCgroupV1Limit(t *testing.T) {
	info := detect(t, Options{}, "base", "cgroup-v1")
	m := info.Memory
	if m.CgroupVersion != 1 || m.CgroupLimitBytes != 4*gib {
		t.Fatalf("cgroup = v%d limit %d, want v1 4 GiB", m.CgroupVersion, m.CgroupLimitBytes)
	}
	if m.AvailableBytes != 3*gib {
		t.Errorf("available = %s, want 3 GiB", bytesize.Format(m.AvailableBytes))
	}
	if info.CPU.QuotaCPUs != 1.5 {
		t.Errorf("cpu quota = %v, want 1.5", info.CPU.QuotaCPUs)
	}
	if r := Recommend(info, nil, RecommendOptions{}); r.Threads != 1 {
		t.Errorf("threads = %d, want 1 (quota 1.5 CPUs)", r.Threads)
	}
}

func TestDetectNvidiaSMI(t *testing.T) {
	tests := []struct {
		file string
		want []GPU
	}{
		{"one-24gb.txt", []GPU{{Index: 0, Vendor: VendorNVIDIA, Name: "NVIDIA GeForce RTX 4090",
			VRAMTotalBytes: 24564 * mib, VRAMFreeBytes: 23997 * mib, Driver: "550.54.15", Source: SourceNvidiaSMI}}},
		{"two-80gb.txt", []GPU{
			{Index: 0, Vendor: VendorNVIDIA, Name: "NVIDIA H100 80GB HBM3", VRAMTotalBytes: 81559 * mib,
				VRAMFreeBytes: 81004 * mib, Driver: "550.90.07", Source: SourceNvidiaSMI},
			{Index: 1, Vendor: VendorNVIDIA, Name: "NVIDIA H100 80GB HBM3", VRAMTotalBytes: 81559 * mib,
				VRAMFreeBytes: 40960 * mib, Driver: "550.90.07", Source: SourceNvidiaSMI}}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			info := detect(t, Options{NvidiaSMI: smiFile(t, tt.file)}, "base")
			if !slices.Equal(info.GPUs, tt.want) {
				t.Errorf("gpus =\n%+v\nwant\n%+v", info.GPUs, tt.want)
			}
			if len(info.Warnings) != 0 {
				t.Errorf("warnings: %q", info.Warnings)
			}
		})
	}
}

func TestDetectNvidiaSMIMalformed(t *testing.T) {
	info := detect(t, Options{NvidiaSMI: smiFile(t, "malformed.txt")}, "base")
	if len(info.GPUs) != 0 {
		t.Errorf("gpus = %+v", info.GPUs)
	}
	if !hasWarning(info, "unreadable nvidia-smi output") || !hasWarning(info, "Driver/library version mismatch") {
		t.Errorf("want a warning quoting the output, got %q", info.Warnings)
	}
	if info.CPU.Cores != 8 || info.Memory.TotalBytes == 0 {
		t.Error("a bad nvidia-smi must not spoil the rest")
	}

	info = detect(t, Options{NvidiaSMI: smiFile(t, "partly-malformed.txt")}, "base")
	if len(info.GPUs) != 1 || info.GPUs[0].Name != "NVIDIA A10" {
		t.Errorf("gpus = %+v, want the one readable A10", info.GPUs)
	}
	if !hasWarning(info, `memory.total: "lots"`) {
		t.Errorf("warnings = %q", info.Warnings)
	}

	info = detect(t, Options{NvidiaSMI: smiFile(t, "na-memory.txt")}, "base")
	if len(info.GPUs) != 1 || info.GPUs[0].VRAMTotalBytes != 0 || info.GPUs[0].Name != "NVIDIA GH200 480GB" {
		t.Errorf("gpus = %+v", info.GPUs)
	}
	if !hasWarning(info, "no memory figures for GPU 0") {
		t.Errorf("warnings = %q", info.Warnings)
	}
	if r := Recommend(info, nil, RecommendOptions{}); r.VRAMBudgetBytes != 0 || len(r.GPUs) != 0 {
		t.Errorf("a GPU of unknown VRAM must not be offloaded to: %+v", r)
	}
}

func TestDetectNvidiaSMIFailures(t *testing.T) {
	notFound := func(context.Context, []string) ([]byte, error) {
		return nil, fmt.Errorf("nvidia-smi: %w", exec.ErrNotFound)
	}
	info := detect(t, Options{NvidiaSMI: notFound}, "base")
	if len(info.GPUs) != 0 || len(info.Warnings) != 0 {
		t.Errorf("absent nvidia-smi must be silent: %+v %q", info.GPUs, info.Warnings)
	}

	failing := func(context.Context, []string) ([]byte, error) {
		return nil, errors.New("exit status 9: NVIDIA-SMI has failed")
	}
	info = detect(t, Options{NvidiaSMI: failing}, "base")
	if !hasWarning(info, "nvidia-smi failed: exit status 9") {
		t.Errorf("warnings = %q", info.Warnings)
	}

	hanging := func(ctx context.Context, _ []string) ([]byte, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	start := time.Now()
	info = detect(t, Options{NvidiaSMI: hanging, CommandTimeout: 50 * time.Millisecond}, "base")
	if time.Since(start) > 5*time.Second {
		t.Error("CommandTimeout not applied")
	}
	if !hasWarning(info, "no answer within 50ms") {
		t.Errorf("warnings = %q", info.Warnings)
	}
}

// fakeNVML is an NVMLLibrary with canned devices.
type fakeNVML struct {
	initErr  error
	devices  []GPU
	devErr   map[int]error
	closed   *atomic.Int32
	inited   bool
	shutdown bool
}

func (f *fakeNVML) Init() error {
	if f.initErr != nil {
		return f.initErr
	}
	f.inited = true
	return nil
}
func (f *fakeNVML) DeviceCount() (int, error) { return len(f.devices), nil }
func (f *fakeNVML) Device(i int) (string, int64, int64, error) {
	if err := f.devErr[i]; err != nil {
		return "", 0, 0, err
	}
	d := f.devices[i]
	return d.Name, d.VRAMTotalBytes, d.VRAMFreeBytes, nil
}
func (f *fakeNVML) DriverVersion() (string, error) { return "560.35.03", nil }
func (f *fakeNVML) Close() error {
	f.closed.Add(1)
	return nil
}

func TestDetectNVML(t *testing.T) {
	var closed atomic.Int32
	lib := &fakeNVML{closed: &closed, devices: []GPU{
		{Name: "NVIDIA L4", VRAMTotalBytes: 23034 * mib, VRAMFreeBytes: 22000 * mib},
		{Name: "NVIDIA L4", VRAMTotalBytes: 23034 * mib, VRAMFreeBytes: 100 * mib},
	}}
	var gotPath string
	smiCalled := false
	opts := Options{
		NVML: func(path string) (NVMLLibrary, error) { gotPath = path; return lib, nil },
		NvidiaSMI: func(context.Context, []string) ([]byte, error) {
			smiCalled = true
			return nil, nil
		},
		LookupEnv: env("MDSA_NVML_LIB", "/opt/nvidia/libnvidia-ml.so.1"),
	}
	info := detect(t, opts, "base")
	if gotPath != "/opt/nvidia/libnvidia-ml.so.1" {
		t.Errorf("loaded %q, want $MDSA_NVML_LIB", gotPath)
	}
	if smiCalled {
		t.Error("nvidia-smi run although NVML answered")
	}
	if closed.Load() != 1 {
		t.Errorf("Close called %d times", closed.Load())
	}
	want := []GPU{
		{Index: 0, Vendor: VendorNVIDIA, Name: "NVIDIA L4", VRAMTotalBytes: 23034 * mib, VRAMFreeBytes: 22000 * mib, Driver: "560.35.03", Source: SourceNVML},
		{Index: 1, Vendor: VendorNVIDIA, Name: "NVIDIA L4", VRAMTotalBytes: 23034 * mib, VRAMFreeBytes: 100 * mib, Driver: "560.35.03", Source: SourceNVML},
	}
	if !slices.Equal(info.GPUs, want) {
		t.Errorf("gpus = %+v", info.GPUs)
	}

	// Init fails: warn, close, fall back to nvidia-smi.
	closed.Store(0)
	bad := &fakeNVML{closed: &closed, initErr: errors.New("NVML error 9: Driver Not Loaded")}
	info = detect(t, Options{NVML: func(string) (NVMLLibrary, error) { return bad, nil },
		NvidiaSMI: smiFile(t, "one-24gb.txt")}, "base")
	if len(info.GPUs) != 1 || info.GPUs[0].Source != SourceNvidiaSMI {
		t.Errorf("gpus = %+v, want the nvidia-smi fallback", info.GPUs)
	}
	if !hasWarning(info, "Driver Not Loaded") || closed.Load() != 1 {
		t.Errorf("warnings = %q, closed %d", info.Warnings, closed.Load())
	}

	// One device unreadable: keep the other, say so.
	closed.Store(0)
	partial := &fakeNVML{closed: &closed, devices: want, devErr: map[int]error{0: errors.New("GPU is lost")}}
	info = detect(t, Options{NVML: func(string) (NVMLLibrary, error) { return partial, nil }}, "base")
	if len(info.GPUs) != 1 || info.GPUs[0].Index != 1 || !hasWarning(info, "device 0: GPU is lost") {
		t.Errorf("gpus = %+v warnings = %q", info.GPUs, info.Warnings)
	}

	// An explicit MDSA_NVML_LIB that is missing is worth a warning.
	info = detect(t, Options{LookupEnv: env("MDSA_NVML_LIB", "/nonexistent/libnvidia-ml.so.1")}, "base")
	if !hasWarning(info, "MDSA_NVML_LIB=/nonexistent") {
		t.Errorf("warnings = %q", info.Warnings)
	}
}

func TestLoadNVMLMissing(t *testing.T) {
	_, err := loadNVML("/nonexistent/libnvidia-ml.so.1")
	if !errors.Is(err, ErrNVMLNotFound) {
		t.Fatalf("err = %v, want ErrNVMLNotFound", err)
	}
}

func TestDetectVisibleDevices(t *testing.T) {
	info := detect(t, Options{NvidiaSMI: smiFile(t, "two-80gb.txt"), LookupEnv: env("CUDA_VISIBLE_DEVICES", "1")}, "base")
	if len(info.GPUs) != 1 || info.GPUs[0].Index != 1 {
		t.Errorf("gpus = %+v, want only GPU 1", info.GPUs)
	}
	if !hasWarning(info, `GPU 0 (NVIDIA H100 80GB HBM3) hidden by CUDA_VISIBLE_DEVICES="1"`) {
		t.Errorf("warnings = %q", info.Warnings)
	}
	info = detect(t, Options{NvidiaSMI: smiFile(t, "two-80gb.txt"), LookupEnv: env("CUDA_VISIBLE_DEVICES", "")}, "base")
	if len(info.GPUs) != 0 {
		t.Errorf("empty CUDA_VISIBLE_DEVICES hides all; got %+v", info.GPUs)
	}
	info = detect(t, Options{NvidiaSMI: smiFile(t, "two-80gb.txt"), LookupEnv: env("CUDA_VISIBLE_DEVICES", "GPU-8b1c")}, "base")
	if len(info.GPUs) != 2 || !hasWarning(info, "UUID") {
		t.Errorf("gpus = %+v warnings %q", info.GPUs, info.Warnings)
	}
}

func TestDetectAMDWithoutPCIIDs(t *testing.T) {
	info := detect(t, Options{}, "base", "amd")
	want := []GPU{{Index: 0, Vendor: VendorAMD, Name: "AMD GPU [1002:744c]", VRAMTotalBytes: 25753026560,
		VRAMFreeBytes: 25753026560 - gib, Driver: "amdgpu", PCIAddress: "0000:03:00.0", Source: SourceAMDGPUSysf}}
	if !slices.Equal(info.GPUs, want) {
		t.Errorf("gpus =\n%+v\nwant\n%+v", info.GPUs, want)
	}
	t.Logf("warnings: %q", info.Warnings)
	if !hasWarning(info, "no pci.ids file") {
		t.Errorf("want a pci.ids warning, got %q", info.Warnings)
	}
	if info.CPU.Cores != 8 {
		t.Error("missing pci.ids must not spoil CPU detection")
	}
}

func TestDetectAMDWithPCIIDs(t *testing.T) {
	info := detect(t, Options{}, "base", "amd", "pciids")
	if len(info.GPUs) != 1 {
		t.Fatalf("gpus = %+v", info.GPUs)
	}
	if got := info.GPUs[0].Name; got != "AMD/ATI Navi 31 [Radeon RX 7900 XT/7900 XTX/7900 GRE/7900M]" {
		t.Errorf("name = %q", got)
	}
	if hasWarning(info, "pci.ids") {
		t.Errorf("warnings = %q", info.Warnings)
	}
	// HIP_VISIBLE_DEVICES hides AMD GPUs like CUDA_VISIBLE_DEVICES NVIDIA's.
	info = detect(t, Options{LookupEnv: env("HIP_VISIBLE_DEVICES", "-1")}, "base", "amd")
	if len(info.GPUs) != 0 {
		t.Errorf("gpus = %+v", info.GPUs)
	}
}

func TestDetectNVIDIAInSysfsWithoutTools(t *testing.T) {
	info := detect(t, Options{}, "base", "nvidia-sysfs")
	if len(info.GPUs) != 0 {
		t.Errorf("gpus = %+v", info.GPUs)
	}
	if !hasWarning(info, "GPU 0000:01:00.0 (device 0x2684) is in sysfs but neither NVML") {
		t.Errorf("warnings = %q", info.Warnings)
	}
	// With nvidia-smi answering, no such warning.
	info = detect(t, Options{NvidiaSMI: smiFile(t, "one-24gb.txt")}, "base", "nvidia-sysfs")
	if hasWarning(info, "is in sysfs") || len(info.GPUs) != 1 {
		t.Errorf("gpus = %+v warnings = %q", info.GPUs, info.Warnings)
	}
}

func TestDetectARM(t *testing.T) {
	info := detect(t, Options{}, "base", "arm64")
	want := []string{"bf16", "dotprod", "fp16", "i8mm", "neon", "sve", "sve2"}
	if !slices.Equal(info.CPU.Flags, want) {
		t.Errorf("flags = %v, want %v", info.CPU.Flags, want)
	}
	if info.CPU.Vendor != "ARM" {
		t.Errorf("vendor = %q", info.CPU.Vendor)
	}
}

func TestDetectEmptyRoot(t *testing.T) {
	info, err := Detect(context.Background(), Options{Root: t.TempDir(), LookupEnv: env()})
	if err != nil {
		t.Fatalf("Detect must degrade, not fail: %v", err)
	}
	if info.CPU.Threads != 0 || info.Memory.TotalBytes != 0 || len(info.GPUs) != 0 {
		t.Errorf("info = %+v", info)
	}
	for _, w := range []string{"cpu: topology unreadable", "memory: reading"} {
		if !hasWarning(info, w) {
			t.Errorf("missing warning %q in %q", w, info.Warnings)
		}
	}
	r := Recommend(info, []CatalogModel{{Name: "m", Params: 1e9}}, RecommendOptions{})
	if r.Threads != 1 || r.MemoryBudgetBytes != 0 || r.Models[0].Fits {
		t.Errorf("recommendation on nothing = %+v", r)
	}
}

func TestDetectCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Detect(ctx, Options{Root: t.TempDir()}); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v", err)
	}
}

// TestDetectLive runs on whatever machine runs the tests: it must not fail,
// and it must find at least one CPU and some memory.
func TestDetectLive(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	info, err := Detect(ctx, Options{})
	took := time.Since(start)
	if err != nil {
		t.Fatalf("Detect: %v", err)
	}
	b, _ := json.MarshalIndent(info, "", "  ")
	t.Logf("detected in %v:\n%s", took, b)
	if info.CPU.Threads < 1 || info.CPU.Cores < 1 || info.CPU.Cores > info.CPU.Threads {
		t.Errorf("cpu = %+v", info.CPU)
	}
	if info.Memory.TotalBytes <= 0 || info.Memory.AvailableBytes <= 0 || info.Memory.AvailableBytes > info.Memory.TotalBytes {
		t.Errorf("memory = %+v", info.Memory)
	}
	for _, g := range info.GPUs {
		if g.VRAMFreeBytes > g.VRAMTotalBytes {
			t.Errorf("gpu %+v: free > total", g)
		}
	}
	rec := Recommend(info, []CatalogModel{{Name: "qwen2.5-0.5b-instruct", Params: ParamsFromName("qwen2.5-0.5b-instruct"), ContextLength: 32768}}, RecommendOptions{})
	rb, _ := json.MarshalIndent(rec, "", "  ")
	t.Logf("recommendation:\n%s", rb)
	if rec.Threads < 1 || rec.Threads > info.CPU.Threads {
		t.Errorf("threads = %d", rec.Threads)
	}
}

func BenchmarkDetectSnapshot(b *testing.B) {
	root := buildRoot(b, "base", "cgroup-v2", "amd", "pciids")
	opts := Options{Root: root, LookupEnv: env(), NVML: noNVML, NvidiaSMI: smiFile(b, "two-80gb.txt")}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Detect(ctx, opts); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDetectLive(b *testing.B) {
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Detect(ctx, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

// Detect keeps no shared state: concurrent calls (each with its own ghw
// logger and NVML handle) must not race.
func TestDetectConcurrent(t *testing.T) {
	root := buildRoot(t, "base", "cgroup-v2", "amd", "pciids")
	opts := Options{Root: root, LookupEnv: env(), NVML: noNVML, NvidiaSMI: smiFile(t, "one-24gb.txt")}
	want, err := Detect(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			got, err := Detect(context.Background(), opts)
			if err == nil && !slices.Equal(got.GPUs, want.GPUs) {
				err = fmt.Errorf("gpus differ: %+v", got.GPUs)
			}
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
