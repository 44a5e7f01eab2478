package hardware

import (
	"fmt"
	"runtime"
	"slices"

	"github.com/jaypipes/ghw"
)

// cpuFlags maps a /proc/cpuinfo flag (x86 "flags", ARM "Features") to the
// name reported in CPU.Flags. Only extensions that llama.cpp's CPU kernels
// use are kept.
var cpuFlags = map[string]string{
	// x86
	"pni":         "sse3",
	"ssse3":       "ssse3",
	"sse4_1":      "sse4_1",
	"sse4_2":      "sse4_2",
	"avx":         "avx",
	"avx2":        "avx2",
	"fma":         "fma",
	"f16c":        "f16c",
	"avx_vnni":    "avx_vnni",
	"avx512f":     "avx512f",
	"avx512bw":    "avx512bw",
	"avx512vl":    "avx512vl",
	"avx512_vnni": "avx512_vnni",
	"avx512_bf16": "avx512_bf16",
	"amx_tile":    "amx_tile",
	"amx_int8":    "amx_int8",
	"amx_bf16":    "amx_bf16",
	// ARM: arm64 names Advanced SIMD "asimd"; 32-bit ARM says "neon".
	"asimd":   "neon",
	"neon":    "neon",
	"asimddp": "dotprod",
	"asimdhp": "fp16",
	"i8mm":    "i8mm",
	"bf16":    "bf16",
	"sve":     "sve",
	"sve2":    "sve2",
}

// interestingFlags keeps the flags of cpuFlags, renamed, sorted and unique.
func interestingFlags(all []string) []string {
	out := []string{}
	for _, f := range all {
		if name, ok := cpuFlags[f]; ok && !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

func detectCPU(opts Options, w *warnings) CPU {
	c := CPU{Flags: []string{}}
	sink := &ghwSink{}
	info, err := ghwCall("cpu", func() (*ghw.CPUInfo, error) { return ghw.CPU(ghwArgs(opts, sink)...) })
	sink.flush(w)
	if err != nil {
		w.add(fmt.Sprintf("cpu: %v", err))
	} else if info != nil {
		c.Cores = int(info.TotalCores)
		c.Threads = int(info.TotalHardwareThreads)
		c.Packages = len(info.Processors)
		var flags []string
		for _, p := range info.Processors {
			if c.Model == "" {
				c.Model = p.Model
			}
			if c.Vendor == "" {
				c.Vendor = p.Vendor
			}
			flags = append(flags, p.Capabilities...)
		}
		c.Flags = interestingFlags(flags)
	}
	if c.Threads == 0 {
		if opts.live() {
			c.Threads = runtime.NumCPU()
			c.Cores = c.Threads
			w.add(fmt.Sprintf("cpu: topology unreadable under %s; assuming %d cores from the Go runtime", opts.path("sys/devices/system/cpu"), c.Threads))
		} else {
			w.add(fmt.Sprintf("cpu: topology unreadable under %s; core count unknown", opts.path("sys/devices/system/cpu")))
		}
	}
	if c.Cores == 0 {
		c.Cores = c.Threads
	}
	c.QuotaCPUs = cgroupCPUQuota(opts, w)
	return c
}

func detectNUMA(opts Options, w *warnings) []NUMANode {
	nodes := []NUMANode{}
	sink := &ghwSink{}
	topo, err := ghwCall("topology", func() (*ghw.TopologyInfo, error) { return ghw.Topology(ghwArgs(opts, sink)...) })
	sink.flush(w)
	if err != nil {
		w.add(fmt.Sprintf("numa: %v", err))
		return nodes
	}
	if topo == nil {
		return nodes
	}
	for _, n := range topo.Nodes {
		if n == nil {
			continue
		}
		node := NUMANode{ID: n.ID, Cores: len(n.Cores)}
		for _, core := range n.Cores {
			if core != nil {
				node.Threads += len(core.LogicalProcessors)
			}
		}
		if n.Memory != nil && n.Memory.TotalUsableBytes > 0 {
			node.MemoryBytes = n.Memory.TotalUsableBytes
		}
		nodes = append(nodes, node)
	}
	slices.SortFunc(nodes, func(a, b NUMANode) int { return a.ID - b.ID })
	return nodes
}
