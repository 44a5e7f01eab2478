package hardware

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/jaypipes/ghw"
	"github.com/jaypipes/pcidb"
)

// PCI vendor IDs as sysfs writes them.
const (
	pciVendorAMD    = "0x1002"
	pciVendorNVIDIA = "0x10de"
)

var (
	reDRMCard    = regexp.MustCompile(`^card([0-9]+)$`)
	rePCIAddress = regexp.MustCompile(`^[0-9a-fA-F]{4,}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$`)
)

func detectGPUs(ctx context.Context, opts Options, w *warnings) ([]GPU, error) {
	gpus := []GPU{}
	nv, nvFound, err := detectNVIDIA(ctx, opts, w)
	if err != nil {
		return gpus, err
	}
	gpus = append(gpus, filterVisible(opts, w, nv, VendorNVIDIA, "CUDA_VISIBLE_DEVICES")...)

	cards := scanDRM(opts, w)
	amd := amdGPUs(opts, w, cards)
	gpus = append(gpus, filterVisible(opts, w, amd, VendorAMD, "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES")...)

	if !nvFound {
		for _, c := range cards {
			if c.vendor == pciVendorNVIDIA {
				w.add(fmt.Sprintf("nvidia: GPU %s (device %s) is in sysfs but neither NVML (%s) nor nvidia-smi is available: its VRAM is unknown and it is not used for offloading; install the NVIDIA driver utilities",
					c.addressOr(c.name), c.device, DefaultNVMLLibrary))
			}
		}
	}
	return gpus, nil
}

// drmCard is one /sys/class/drm/cardN entry.
type drmCard struct {
	name    string // cardN
	num     int
	dir     string // .../cardN/device
	vendor  string // "0x1002"
	device  string // "0x744c"
	address string // PCI address, "" when unknown
}

func (c drmCard) addressOr(alt string) string {
	if c.address != "" {
		return c.address
	}
	return alt
}

func readTrim(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// scanDRM lists the DRM cards (not their connectors), in card order.
func scanDRM(opts Options, w *warnings) []drmCard {
	dir := opts.path("sys", "class", "drm")
	entries, err := os.ReadDir(dir)
	if err != nil {
		if !os.IsNotExist(err) {
			w.add(fmt.Sprintf("gpu: reading %s: %v", dir, err))
		}
		return nil
	}
	var cards []drmCard
	for _, e := range entries {
		m := reDRMCard.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		num, err := strconv.Atoi(m[1])
		if err != nil {
			continue
		}
		c := drmCard{name: e.Name(), num: num, dir: filepath.Join(dir, e.Name(), "device")}
		c.vendor = strings.ToLower(readTrim(filepath.Join(c.dir, "vendor")))
		c.device = strings.ToLower(readTrim(filepath.Join(c.dir, "device")))
		if real, err := filepath.EvalSymlinks(c.dir); err == nil && rePCIAddress.MatchString(filepath.Base(real)) {
			c.address = filepath.Base(real)
		}
		cards = append(cards, c)
	}
	slices.SortFunc(cards, func(a, b drmCard) int { return a.num - b.num })
	return cards
}

// amdGPUs reads the amdgpu VRAM files of the AMD cards.
func amdGPUs(opts Options, w *warnings, cards []drmCard) []GPU {
	gpus := []GPU{}
	var names map[string]string
	namesLoaded := false
	for _, c := range cards {
		if c.vendor != pciVendorAMD {
			continue
		}
		totalPath := filepath.Join(c.dir, "mem_info_vram_total")
		total, err := readInt64File(totalPath)
		if err != nil || total <= 0 {
			w.add(fmt.Sprintf("amd: %s (%s) has no readable %s (not driven by amdgpu?): not used for offloading",
				c.name, c.addressOr("no PCI address"), filepath.Base(totalPath)))
			continue
		}
		g := GPU{
			Index:          len(gpus),
			Vendor:         VendorAMD,
			VRAMTotalBytes: total,
			PCIAddress:     c.address,
			Source:         SourceAMDGPUSysf,
		}
		used, err := readInt64File(filepath.Join(c.dir, "mem_info_vram_used"))
		if err != nil || used < 0 {
			w.add(fmt.Sprintf("amd: %s: mem_info_vram_used unreadable; assuming all VRAM free", c.name))
			used = 0
		}
		g.VRAMFreeBytes = max(total-used, 0)
		if link, err := os.Readlink(filepath.Join(c.dir, "driver")); err == nil {
			g.Driver = filepath.Base(link)
		}
		g.Name = readTrim(filepath.Join(c.dir, "product_name"))
		if g.Name == "" && c.address != "" {
			if !namesLoaded {
				names = pciNames(opts, w)
				namesLoaded = true
			}
			g.Name = names[c.address]
		}
		if g.Name == "" {
			g.Name = fmt.Sprintf("AMD GPU [%s:%s]", strings.TrimPrefix(c.vendor, "0x"), strings.TrimPrefix(c.device, "0x"))
		}
		gpus = append(gpus, g)
	}
	return gpus
}

// pciIDsCandidates lists where a pci.ids file may be, in search order.
func pciIDsCandidates(opts Options) []string {
	if opts.PCIIDsPath != "" {
		return []string{opts.PCIIDsPath}
	}
	var c []string
	if v, ok := opts.env("PCIDB_PATH"); ok && v != "" {
		c = append(c, v)
	}
	for _, d := range []string{"hwdata", "misc"} {
		c = append(c, opts.path("usr", "share", d, "pci.ids"), opts.path("usr", "share", d, "pci.ids.gz"))
	}
	if opts.live() {
		if v, ok := opts.env("XDG_CACHE_HOME"); ok && v != "" {
			c = append(c, filepath.Join(v, "pci.ids"))
		}
		if v, ok := opts.env("HOME"); ok && v != "" {
			c = append(c, filepath.Join(v, ".cache", "pci.ids"))
		}
	}
	return c
}

// pciNames maps PCI address to "vendor product" names through ghw and a
// pci.ids file. Without one (ghw cannot name devices and would fail) it
// returns nil and records why.
func pciNames(opts Options, w *warnings) map[string]string {
	candidates := pciIDsCandidates(opts)
	found := ""
	for _, p := range candidates {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			found = p
			break
		}
	}
	if found == "" {
		w.add(fmt.Sprintf("gpu: no pci.ids file (looked at %s; Debian packages hwdata and pciutils ship one): GPUs are named by their PCI IDs",
			strings.Join(candidates, ", ")))
		return nil
	}
	db, err := ghwCall("pci.ids", func() (*pcidb.PCIDB, error) { return pcidb.New(pcidb.WithPath(found)) })
	if err != nil {
		w.add(fmt.Sprintf("gpu: %s: %v: GPUs are named by their PCI IDs", found, err))
		return nil
	}
	sink := &ghwSink{}
	info, err := ghwCall("gpu", func() (*ghw.GPUInfo, error) {
		return ghw.GPU(append(ghwArgs(opts, sink), ghw.WithPCIDB(db))...)
	})
	if err != nil {
		sink.flush(w)
		w.add(fmt.Sprintf("gpu: %v: GPUs are named by their PCI IDs", err))
		return nil
	}
	names := map[string]string{}
	for _, card := range info.GraphicsCards {
		if card == nil || card.DeviceInfo == nil || card.DeviceInfo.Product == nil {
			continue
		}
		name := card.DeviceInfo.Product.Name
		if name == "" || name == "unknown" {
			continue
		}
		if v := card.DeviceInfo.Vendor; v != nil && v.Name != "" && v.Name != "unknown" {
			name = shortVendor(v.Name) + " " + name
		}
		names[card.Address] = name
	}
	return names
}

// shortVendor trims a pci.ids vendor name ("Advanced Micro Devices, Inc.
// [AMD/ATI]") to its bracketed short form ("AMD/ATI") when it has one.
func shortVendor(v string) string {
	if i := strings.LastIndexByte(v, '['); i >= 0 && strings.HasSuffix(v, "]") {
		return v[i+1 : len(v)-1]
	}
	return v
}

// filterVisible keeps the GPUs whose index is listed in the first of the
// variables that is set, as the GPU runtime itself would: an empty value
// hides every device, a negative entry ends the list.
func filterVisible(opts Options, w *warnings, gpus []GPU, vendor string, vars ...string) []GPU {
	for _, name := range vars {
		val, ok := opts.env(name)
		if !ok {
			continue
		}
		keep := map[int]bool{}
		for _, f := range strings.Split(val, ",") {
			f = strings.TrimSpace(f)
			if f == "" {
				continue
			}
			n, err := strconv.Atoi(f)
			if err != nil {
				if len(gpus) > 0 {
					w.add(fmt.Sprintf("%s: %s=%q names devices by UUID or MIG id; all %s GPUs are listed", vendor, name, val, vendor))
				}
				return gpus
			}
			if n < 0 {
				break
			}
			keep[n] = true
		}
		var out []GPU
		for _, g := range gpus {
			if keep[g.Index] {
				out = append(out, g)
			} else {
				w.add(fmt.Sprintf("%s: GPU %d (%s) hidden by %s=%q", vendor, g.Index, g.Name, name, val))
			}
		}
		return out
	}
	return gpus
}
