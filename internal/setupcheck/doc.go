// Package setupcheck tests scripts/setup-llama.sh, which `make setup` runs
// to install the llama.cpp libraries: its choice of build (CUDA, Vulkan or
// CPU) is checked against fixture machines (a directory standing for /
// through LLAMA_PROBE_ROOT, fake nvidia-smi programs in PATH) with
// --print-backend, and its installs against a fake npm that serves small
// stand-in packages. No GPU, network or real npm is needed. The package has
// no code of its own, only tests.
package setupcheck
