package config

import (
	"bytes"
	"errors"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

func TestGPULayersParse(t *testing.T) {
	cases := []struct {
		toml string
		want GPULayers
	}{
		{"", AutoGPULayers()}, // the default
		{"gpu_layers = \"auto\"", AutoGPULayers()},
		{"gpu_layers = \" Auto \"", AutoGPULayers()},
		{"gpu_layers = 0", FixedGPULayers(0)},
		{"gpu_layers = -1", FixedGPULayers(GPULayersAll)},
		{"gpu_layers = 28", FixedGPULayers(28)},
	}
	for _, c := range cases {
		cfg, err := Parse("m.toml", []byte("[engine]\n"+c.toml+"\n"))
		if err != nil {
			t.Fatalf("%q: %v", c.toml, err)
		}
		if cfg.Engine.GPULayers != c.want {
			t.Errorf("%q: got %+v, want %+v", c.toml, cfg.Engine.GPULayers, c.want)
		}
	}
	if !Default().Engine.GPULayers.Auto {
		t.Error(`the default engine.gpu_layers should be "auto"`)
	}
	if (Config{}).Engine.GPULayers != FixedGPULayers(0) {
		t.Error("the zero value should be a fixed 0 (CPU only)")
	}
	if s := AutoGPULayers().String() + " " + FixedGPULayers(-1).String(); s != "auto -1" {
		t.Errorf("String = %q", s)
	}
}

func TestGPULayersErrorsNameFileLineKey(t *testing.T) {
	cases := []struct {
		name, toml string
		line       int
		msg        string
	}{
		{"bad string", "[engine]\nparallel = 2\ngpu_layers = \"lots\"\n", 3, `"lots" is not a layer count: want "auto" or an integer`},
		{"numeric string", "[engine]\n\ngpu_layers = \"12\"\n", 3, `"12" is not a layer count`},
		{"below -1", "[engine]\ngpu_layers = -2\n", 2, "-2 is out of range [-1, 100000]"},
		{"too many", "# c\n[engine]\nthreads = 2\ngpu_layers = 100001\n", 4, "out of range"},
		{"huge", "[engine]\ngpu_layers = 99999999999\n", 2, "out of range"},
		{"float", "[engine]\ngpu_layers = 1.5\n", 2, "got float64 1.5"},
		{"bool", "[engine]\ngpu_layers = true\n", 2, "got bool true"},
		{"inline table", "engine = { gpu_layers = \"x\" }\n", 1, `"x" is not a layer count`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("conf/mdsa.toml", []byte(c.toml))
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("want *Error, got %v", err)
			}
			if ce.File != "conf/mdsa.toml" || ce.Line != c.line || ce.Key != "engine.gpu_layers" {
				t.Fatalf("got file=%q line=%d key=%q (%v); want line %d key engine.gpu_layers", ce.File, ce.Line, ce.Key, err, c.line)
			}
			want := "conf/mdsa.toml:" + itoa(c.line) + ": key engine.gpu_layers: "
			if !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("message %q: want prefix %q and %q", err, want, c.msg)
			}
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestGPULayersTOMLRoundTrip(t *testing.T) {
	for _, g := range []GPULayers{AutoGPULayers(), FixedGPULayers(0), FixedGPULayers(-1), FixedGPULayers(40)} {
		cfg := Default()
		cfg.Engine.GPULayers = g
		var buf bytes.Buffer
		if err := toml.NewEncoder(&buf).Encode(cfg); err != nil {
			t.Fatal(err)
		}
		back, err := Parse("rt.toml", buf.Bytes())
		if err != nil {
			t.Fatalf("%v: reading back: %v\n%s", g, err, buf.String())
		}
		if back.Engine.GPULayers != g {
			t.Errorf("%v read back as %v", g, back.Engine.GPULayers)
		}
	}
}

func TestEffectiveThreads(t *testing.T) {
	cfg := Default()
	if cfg.Engine.Threads != 0 {
		t.Fatalf("default threads = %d, want 0 (the recommendation)", cfg.Engine.Threads)
	}
	if got := cfg.EffectiveThreads(4); got != 4 {
		t.Errorf("threads = 0 with a recommendation of 4: got %d", got)
	}
	if got := cfg.EffectiveThreads(0); got != runtime.NumCPU() {
		t.Errorf("threads = 0 without a recommendation: got %d, want the CPU count %d", got, runtime.NumCPU())
	}
	cfg.Engine.Threads = 3
	if got := cfg.EffectiveThreads(4); got != 3 {
		t.Errorf("threads = 3: got %d", got)
	}
}
