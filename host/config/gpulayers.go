package config

import (
	"fmt"
	"strconv"
	"strings"
)

// GPULayersAll is the GPULayers.Count that offloads every layer.
const GPULayersAll = -1

// gpuLayersMax bounds GPULayers.Count (no model has nearly as many layers).
const gpuLayersMax = 100000

// GPULayers is engine.gpu_layers: either "auto", which leaves the choice to
// the hardware recommendation for each model when it loads (0 without a
// usable GPU, all layers when the model fits in VRAM, the share that fits
// otherwise), or a fixed count. In TOML it is the string "auto" or an
// integer. The zero value is a fixed 0: CPU only.
type GPULayers struct {
	// Auto defers the choice to the hardware recommendation; Count is then
	// unused.
	Auto bool
	// Count, when Auto is false: 0 = CPU only, GPULayersAll (-1) = all
	// layers, N > 0 = N layers.
	Count int
}

// AutoGPULayers is engine.gpu_layers = "auto".
func AutoGPULayers() GPULayers { return GPULayers{Auto: true} }

// FixedGPULayers is engine.gpu_layers = n (0 CPU only, -1 all layers).
func FixedGPULayers(n int) GPULayers { return GPULayers{Count: n} }

// String is "auto" or the count.
func (g GPULayers) String() string {
	if g.Auto {
		return "auto"
	}
	return strconv.Itoa(g.Count)
}

// UnmarshalTOML implements toml.Unmarshaler: it accepts the string "auto"
// (any case, surrounding blanks ignored) or an integer. Range checks are
// left to validation, which names the line.
func (g *GPULayers) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case string:
		if !strings.EqualFold(strings.TrimSpace(x), "auto") {
			return fmt.Errorf(`%q is not a layer count: want "auto" or an integer (0 = CPU only, -1 = all layers, N = N layers)`, x)
		}
		*g = AutoGPULayers()
		return nil
	case int64:
		if x < -1<<31 || x > 1<<31-1 {
			return fmt.Errorf(`%d is out of range [-1, %d] (or "auto")`, x, gpuLayersMax)
		}
		*g = FixedGPULayers(int(x))
		return nil
	default:
		return fmt.Errorf(`want "auto" or an integer (0 = CPU only, -1 = all layers, N = N layers), got %T %v`, v, v)
	}
}

// MarshalTOML implements toml.Marshaler: "auto" as a string, a count as an
// integer, so that an encoded configuration reads back the same.
func (g GPULayers) MarshalTOML() ([]byte, error) {
	if g.Auto {
		return []byte(`"auto"`), nil
	}
	return []byte(strconv.Itoa(g.Count)), nil
}

// validate checks Count when the value is not "auto".
func (g GPULayers) validate() error {
	if g.Auto {
		return nil
	}
	if g.Count < GPULayersAll || g.Count > gpuLayersMax {
		return fmt.Errorf(`%d is out of range [-1, %d] (0 = CPU only, -1 = all layers, or "auto")`, g.Count, gpuLayersMax)
	}
	return nil
}
