package hardware

import (
	"bytes"
	"fmt"
	"runtime"

	"github.com/ebitengine/purego"
)

// nvmlSuccess is NVML_SUCCESS; every NVML call returns an nvmlReturn_t.
const nvmlSuccess = 0

// Buffer sizes from nvml.h (NVML_DEVICE_NAME_V2_BUFFER_SIZE,
// NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE).
const (
	nvmlNameBufferSize   = 96
	nvmlDriverBufferSize = 80
)

// nvmlMemory mirrors nvmlMemory_t: three unsigned long long, in bytes.
type nvmlMemory struct {
	Total, Free, Used uint64
}

// puregoNVML is an NVML library opened with dlopen. Each Detect opens and
// closes its own handle (NVML counts nvmlInit calls), so there is no
// process-wide state.
type puregoNVML struct {
	handle uintptr

	init          func() int32
	shutdown      func() int32
	errorString   func(int32) string
	deviceCount   func(*uint32) int32
	handleByIndex func(uint32, *uintptr) int32
	deviceName    func(uintptr, *byte, uint32) int32
	memoryInfo    func(uintptr, *nvmlMemory) int32
	driverVersion func(*byte, uint32) int32

	initialized bool
}

// loadNVML is the default NVMLLoader: dlopen path and look up the symbols.
func loadNVML(path string) (NVMLLibrary, error) {
	h, err := purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_LOCAL)
	if err != nil {
		return nil, fmt.Errorf("dlopen %s: %w (%w)", path, ErrNVMLNotFound, err)
	}
	l := &puregoNVML{handle: h}
	syms := []struct {
		name string
		fn   any
	}{
		{"nvmlInit_v2", &l.init},
		{"nvmlShutdown", &l.shutdown},
		{"nvmlErrorString", &l.errorString},
		{"nvmlDeviceGetCount_v2", &l.deviceCount},
		{"nvmlDeviceGetHandleByIndex_v2", &l.handleByIndex},
		{"nvmlDeviceGetName", &l.deviceName},
		{"nvmlDeviceGetMemoryInfo", &l.memoryInfo},
		{"nvmlSystemGetDriverVersion", &l.driverVersion},
	}
	for _, s := range syms {
		sym, err := purego.Dlsym(h, s.name)
		if err != nil {
			_ = purego.Dlclose(h)
			return nil, fmt.Errorf("%s: symbol %s: %w", path, s.name, err)
		}
		purego.RegisterFunc(s.fn, sym)
	}
	return l, nil
}

func (l *puregoNVML) check(ret int32) error {
	if ret == nvmlSuccess {
		return nil
	}
	if msg := l.errorString(ret); msg != "" {
		return fmt.Errorf("NVML error %d: %s", ret, msg)
	}
	return fmt.Errorf("NVML error %d", ret)
}

// Init implements NVMLLibrary.
func (l *puregoNVML) Init() error {
	if err := l.check(l.init()); err != nil {
		return err
	}
	l.initialized = true
	return nil
}

// DeviceCount implements NVMLLibrary.
func (l *puregoNVML) DeviceCount() (int, error) {
	var n uint32
	if err := l.check(l.deviceCount(&n)); err != nil {
		return 0, err
	}
	return int(n), nil
}

// Device implements NVMLLibrary.
func (l *puregoNVML) Device(index int) (string, int64, int64, error) {
	var dev uintptr
	if err := l.check(l.handleByIndex(uint32(index), &dev)); err != nil {
		return "", 0, 0, fmt.Errorf("nvmlDeviceGetHandleByIndex_v2: %w", err)
	}
	name := make([]byte, nvmlNameBufferSize)
	if err := l.check(l.deviceName(dev, &name[0], uint32(len(name)))); err != nil {
		return "", 0, 0, fmt.Errorf("nvmlDeviceGetName: %w", err)
	}
	var mem nvmlMemory
	err := l.check(l.memoryInfo(dev, &mem))
	runtime.KeepAlive(name)
	if err != nil {
		return cString(name), 0, 0, fmt.Errorf("nvmlDeviceGetMemoryInfo: %w", err)
	}
	return cString(name), clampInt64(mem.Total), clampInt64(mem.Free), nil
}

// DriverVersion implements NVMLLibrary.
func (l *puregoNVML) DriverVersion() (string, error) {
	buf := make([]byte, nvmlDriverBufferSize)
	if err := l.check(l.driverVersion(&buf[0], uint32(len(buf)))); err != nil {
		return "", err
	}
	return cString(buf), nil
}

// Close implements NVMLLibrary: nvmlShutdown after a successful Init, then
// dlclose.
func (l *puregoNVML) Close() error {
	var err error
	if l.initialized {
		err = l.check(l.shutdown())
		l.initialized = false
	}
	if l.handle != 0 {
		if cerr := purego.Dlclose(l.handle); cerr != nil && err == nil {
			err = cerr
		}
		l.handle = 0
	}
	return err
}

func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

func clampInt64(v uint64) int64 {
	if v > 1<<62 {
		return 1 << 62
	}
	return int64(v)
}
