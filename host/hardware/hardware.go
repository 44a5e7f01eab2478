// Package hardware detects what the host machine offers to a local language
// model (CPU cores and instruction sets, RAM that is really available to this
// process, NUMA nodes, GPUs and their VRAM) and turns that into settings:
// a memory budget, a thread count, a number of layers to offload and the best
// quantization of each catalog model that fits.
//
// Detection never fails because one source is missing: CPU, memory and
// topology come from github.com/jaypipes/ghw and procfs, NVIDIA GPUs from NVML
// (loaded at run time with purego, no cgo) or else nvidia-smi, AMD GPUs from
// the amdgpu sysfs files. Whatever a source cannot tell is left zero and
// explained in Info.Warnings. Every source can be redirected (a snapshot
// directory for sysfs and procfs, fake nvidia-smi and NVML, a fake
// environment) so that tests run against fixtures.
package hardware

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"time"
)

// Info is what Detect found. Byte counts are int64 to match the model
// catalog's sizes; zero means unknown unless a field says otherwise.
type Info struct {
	CPU    CPU    `json:"cpu"`
	Memory Memory `json:"memory"`
	// NUMA lists the NUMA nodes; a machine without NUMA reports one node.
	// Empty when the topology could not be read.
	NUMA []NUMANode `json:"numa_nodes"`
	// GPUs lists the GPUs a model can be offloaded to, NVIDIA first.
	GPUs []GPU `json:"gpus"`
	// Warnings explains every source that failed or was degraded.
	Warnings []string `json:"warnings"`
}

// CPU describes the processors.
type CPU struct {
	// Model is the marketing name, e.g. "AMD EPYC 9B14".
	Model string `json:"model"`
	// Vendor is the CPUID vendor, e.g. "GenuineIntel", "AuthenticAMD", "ARM".
	Vendor string `json:"vendor"`
	// Packages is the number of physical processor packages (sockets).
	Packages int `json:"packages"`
	// Cores is the number of physical cores.
	Cores int `json:"cores"`
	// Threads is the number of logical processors (hardware threads).
	Threads int `json:"threads"`
	// QuotaCPUs is the cgroup CPU quota in CPUs (cpu.max or
	// cpu.cfs_quota_us / cpu.cfs_period_us); 0 means no quota.
	QuotaCPUs float64 `json:"quota_cpus,omitempty"`
	// Flags lists the instruction-set extensions that matter to llama.cpp
	// kernels, among: sse3 ssse3 sse4_1 sse4_2 avx avx2 fma f16c avx_vnni
	// avx512f avx512bw avx512vl avx512_vnni avx512_bf16 amx_tile amx_int8
	// amx_bf16 neon dotprod fp16 i8mm bf16 sve sve2. Sorted.
	Flags []string `json:"flags"`
}

// HasFlag reports whether the CPU has the named extension (a Flags name).
func (c CPU) HasFlag(name string) bool {
	for _, f := range c.Flags {
		if f == name {
			return true
		}
	}
	return false
}

// Memory describes system RAM as this process sees it.
type Memory struct {
	// TotalBytes is the RAM the kernel manages (MemTotal).
	TotalBytes int64 `json:"total_bytes"`
	// PhysicalBytes is the installed RAM when known (ghw), else 0.
	PhysicalBytes int64 `json:"physical_bytes,omitempty"`
	// AvailableBytes is what can be allocated without swapping: MemAvailable,
	// lowered to what the cgroup limit leaves when there is one.
	AvailableBytes int64 `json:"available_bytes"`
	// HostAvailableBytes is MemAvailable before the cgroup limit applies.
	HostAvailableBytes int64 `json:"host_available_bytes"`
	// CgroupVersion is 1 or 2 when a cgroup memory limit was found, else 0.
	CgroupVersion int `json:"cgroup_version,omitempty"`
	// CgroupLimitBytes is the tightest memory limit of this process's cgroup
	// and its ancestors (memory.max, memory.limit_in_bytes); 0 = no limit.
	CgroupLimitBytes int64 `json:"cgroup_limit_bytes,omitempty"`
	// CgroupUsageBytes is the cgroup's usage minus its inactive file cache
	// (which the kernel reclaims before it would hit the limit).
	CgroupUsageBytes int64 `json:"cgroup_usage_bytes,omitempty"`
}

// NUMANode is one NUMA node.
type NUMANode struct {
	ID int `json:"id"`
	// Cores is the number of physical cores on the node.
	Cores int `json:"cores"`
	// Threads is the number of logical processors on the node.
	Threads int `json:"threads"`
	// MemoryBytes is the node's usable RAM, 0 when unknown.
	MemoryBytes int64 `json:"memory_bytes"`
}

// GPU sources, the values of GPU.Source.
const (
	SourceNVML       = "nvml"
	SourceNvidiaSMI  = "nvidia-smi"
	SourceAMDGPUSysf = "amdgpu-sysfs"
)

// GPU vendors, the values of GPU.Vendor.
const (
	VendorNVIDIA = "nvidia"
	VendorAMD    = "amd"
)

// GPU is one GPU a model can be offloaded to.
type GPU struct {
	// Index is the device index within its vendor's runtime: the NVML /
	// nvidia-smi index for NVIDIA (PCI bus order), the order of the amdgpu
	// DRM cards for AMD.
	Index int `json:"index"`
	// Vendor is VendorNVIDIA or VendorAMD.
	Vendor string `json:"vendor"`
	// Name is the product name, e.g. "NVIDIA H100 80GB HBM3".
	Name string `json:"name"`
	// VRAMTotalBytes and VRAMFreeBytes are the device memory; 0 = unknown.
	VRAMTotalBytes int64 `json:"vram_total_bytes"`
	VRAMFreeBytes  int64 `json:"vram_free_bytes"`
	// Driver is the driver version (NVIDIA) or the kernel driver (AMD).
	Driver string `json:"driver"`
	// PCIAddress is the device's PCI address when known.
	PCIAddress string `json:"pci_address,omitempty"`
	// Source says where the figures came from: SourceNVML, SourceNvidiaSMI
	// or SourceAMDGPUSysf.
	Source string `json:"source"`
}

// NvidiaSMIRunner runs nvidia-smi with args and returns its standard output.
// It returns an error wrapping exec.ErrNotFound or fs.ErrNotExist when
// nvidia-smi is not installed; Detect then stays silent.
type NvidiaSMIRunner func(ctx context.Context, args []string) ([]byte, error)

// NVMLLoader opens the NVIDIA Management Library found at path (a file name
// for the dynamic loader's search, or a full path). It returns an error
// wrapping ErrNVMLNotFound when the library is not installed; Detect then
// tries nvidia-smi silently.
type NVMLLoader func(path string) (NVMLLibrary, error)

// NVMLLibrary is the part of NVML that Detect uses. Init is called first;
// Close (nvmlShutdown, then unloading the library) last, also after a
// failed Init.
type NVMLLibrary interface {
	Init() error
	DeviceCount() (int, error)
	// Device returns the name and the total and free memory of the device
	// at index.
	Device(index int) (name string, totalBytes, freeBytes int64, err error)
	DriverVersion() (string, error)
	Close() error
}

// DefaultNVMLLibrary is the NVML file name handed to the dynamic loader;
// $MDSA_NVML_LIB overrides it.
const DefaultNVMLLibrary = "libnvidia-ml.so.1"

// DefaultCommandTimeout bounds each external command such as nvidia-smi.
const DefaultCommandTimeout = 10 * time.Second

// Options redirect Detect's sources. The zero value inspects this machine.
type Options struct {
	// Root is the directory that stands for "/" when reading sysfs and
	// procfs (a snapshot of /proc and /sys). "" or "/" is the live system.
	// With any other Root, the live NVML and nvidia-smi are not consulted
	// (they would describe this machine, not the snapshot) unless NVML or
	// NvidiaSMI is set.
	Root string
	// PCIIDsPath is the pci.ids file used to name GPUs. "" searches
	// $PCIDB_PATH, Root/usr/share/{hwdata,misc}/pci.ids[.gz] and, for the
	// live system, ~/.cache/pci.ids. The file is optional: without it GPUs
	// are named from their PCI IDs.
	PCIIDsPath string
	// NvidiaSMI runs nvidia-smi; nil runs $MDSA_NVIDIA_SMI or the
	// nvidia-smi found in $PATH.
	NvidiaSMI NvidiaSMIRunner
	// NVML opens NVML; nil uses the purego loader (Linux only).
	NVML NVMLLoader
	// LookupEnv reads environment variables; nil means os.LookupEnv. Read:
	// MDSA_NVML_LIB, MDSA_NVIDIA_SMI, CUDA_VISIBLE_DEVICES,
	// HIP_VISIBLE_DEVICES, ROCR_VISIBLE_DEVICES, PCIDB_PATH, HOME,
	// XDG_CACHE_HOME. (ghw itself also reads its GHW_* variables from the
	// process environment.)
	LookupEnv func(string) (string, bool)
	// CommandTimeout bounds each external command; 0 = DefaultCommandTimeout.
	CommandTimeout time.Duration
	// Logger receives debug logs about each source; nil discards them.
	Logger *slog.Logger
}

func (o Options) root() string {
	if o.Root == "" {
		return "/"
	}
	return o.Root
}

func (o Options) live() bool { return filepath.Clean(o.root()) == "/" }

func (o Options) env(name string) (string, bool) {
	if o.LookupEnv != nil {
		return o.LookupEnv(name)
	}
	return os.LookupEnv(name)
}

func (o Options) path(elem ...string) string {
	return filepath.Join(append([]string{o.root()}, elem...)...)
}

func (o Options) logger() *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// warnings collects Info.Warnings; Detect runs its sources one after
// another, so it needs no lock.
type warnings struct{ list []string }

func (w *warnings) add(msg string) { w.list = append(w.list, msg) }

// Detect inspects the machine (or the snapshot at opts.Root). It returns an
// error only when ctx is done; every other failure degrades the result and
// is explained in Info.Warnings.
func Detect(ctx context.Context, opts Options) (Info, error) {
	info := Info{NUMA: []NUMANode{}, GPUs: []GPU{}, Warnings: []string{}}
	if err := ctx.Err(); err != nil {
		return info, err
	}
	w := &warnings{}
	log := opts.logger()

	start := time.Now()
	info.CPU = detectCPU(opts, w)
	info.NUMA = detectNUMA(opts, w)
	info.Memory = detectMemory(opts, w)
	log.Debug("hardware: cpu and memory", "cores", info.CPU.Cores, "threads", info.CPU.Threads,
		"total", info.Memory.TotalBytes, "available", info.Memory.AvailableBytes, "took", time.Since(start))

	gpus, err := detectGPUs(ctx, opts, w)
	if err != nil {
		return info, err
	}
	info.GPUs = gpus
	log.Debug("hardware: gpus", "count", len(gpus), "took", time.Since(start))
	info.Warnings = append(info.Warnings, w.list...)
	return info, nil
}
