//go:build wasip1

// Command bad is a misbehaving MDSA test plugin. Each misbehaviour lives in
// its own file and is picked by the host-supplied config value "mode", which
// is also the plugin's name (validate always behaves). All modes share one module so the host compiles
// it once (compiling a Go module under the race detector takes seconds).
package main

import "github.com/mdsa-go/mdsa/host/plugin/testdata/kernel"

func main() {}

// behaviour is one misbehaviour.
type behaviour struct {
	abi    string       // ABI version describe reports; "" means 1
	caps   string       // capabilities as a JSON list; "" means []
	prompt func() int32 // the prompt export
	// extra, when set, gives the manifest's keywords and examples (JSON
	// fields) instead of the defaults.
	extra func() string
}

var behaviours = map[string]behaviour{}

var mode string

// current returns the configured behaviour (config is read once per
// instance: it does not change).
func current() (string, behaviour, bool) {
	if mode == "" {
		mode, _ = kernel.Config("mode")
	}
	b, ok := behaviours[mode]
	if !ok {
		kernel.Error("unknown mode " + mode + ` (set config "mode")`)
	}
	return mode, b, ok
}

//go:wasmexport describe
func describe() int32 {
	mode, b, ok := current()
	if !ok {
		return 1
	}
	abi, caps := b.abi, b.caps
	if abi == "" {
		abi = "1"
	}
	if caps == "" {
		caps = "[]"
	}
	fields := `"keywords":["` + mode + `"],"examples":["make ` + mode + ` misbehave"]`
	if b.extra != nil {
		fields = b.extra()
	}
	kernel.Output([]byte(`{"abi":` + abi + `,"name":"` + mode + `","version":"0.1.0",` + fields + `,"capabilities":` + caps + `}`))
	return 0
}

//go:wasmexport prompt
func prompt() int32 {
	_, b, ok := current()
	if !ok {
		return 1
	}
	return b.prompt()
}

//go:wasmexport validate
func validate() int32 {
	_ = kernel.Input()
	return kernel.OK("validate")
}
