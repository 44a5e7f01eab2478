#!/usr/bin/env bash
# Checks MDSA's GPU path on a Linux x86-64 machine with an NVIDIA GPU and
# writes what it finds into OUT (default gpu-check/), one file per step:
#   nvidia-smi.txt    the GPU and driver
#   backend.txt       scripts/setup-llama.sh's decision (auto) on this machine
#   setup.txt         the install of that build into .deps/llama-gpu (and
#                     setup-cuda.txt: the CUDA build, when auto chose another)
#   hw.txt, hw.json   `mdsa hw`: NVML's view, llama.cpp's devices, back-end failures
#   tests.txt         the engine package's tests with every layer offloaded
#                     (MDSA_TEST_GPU_LAYERS=-1; TestGPUOffload runs only here)
#   bench-*.json      `mdsa bench engine` per model size, on the GPU (gpu_layers
#                     -1) and on the CPU alone (gpu_layers 0), one after the other
#   summary.txt       the steps' exit codes
#   (a .json step's standard error goes to the same name with .log added)
# Every step runs even when one before it failed.
#
# Usage: scripts/gpu-check.sh [OUT]
#
# Needs bin/mdsa (make build). Environment:
#   LLAMA_PACKAGES_DIR   package tarballs for a machine without the npm registry
#                        (scripts/setup-llama.sh --download DIR, run elsewhere)
#   GPU_CHECK_TESTS      a test binary of host/engine/llamacpp (go test -c) for a
#                        machine without Go; default: go test
#   GPU_CHECK_PARAMS     synthetic model sizes in parameters (default
#                        "100000000 1000000000")
#   GPU_CHECK_DURATION   --duration of each benchmark phase (default 5s)
set -uo pipefail

out="${1:-gpu-check}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root" || exit 1
lib="$root/.deps/llama-gpu"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
: >"$out/summary.txt"

# step NAME CMD...: runs CMD with its output in OUT/NAME (a .json step's
# standard error in OUT/NAME.log) and records the exit code.
step() {
	local name="$1" rc
	shift
	echo "gpu-check: $name: $*"
	case "$name" in
	*.json) "$@" >"$out/$name" 2>"$out/$name.log" ;;
	*) "$@" >"$out/$name" 2>&1 ;;
	esac
	rc=$?
	echo "$name rc=$rc" >>"$out/summary.txt"
	[ "$rc" = 0 ] || echo "gpu-check: $name failed (exit $rc); see $out/$name" >&2
	return 0
}

if [ ! -x bin/mdsa ]; then
	echo "gpu-check: bin/mdsa is missing: run make build first" >&2
	exit 1
fi

step nvidia-smi.txt nvidia-smi
step backend.txt scripts/setup-llama.sh --print-backend
step setup.txt scripts/setup-llama.sh "$lib"
# When auto did not take CUDA on this GPU machine, the decision is the
# finding; the CUDA build is installed anyway so that the rest checks it.
if ! ls "$lib"/.installed-*-cuda-* >/dev/null 2>&1; then
	step setup-cuda.txt env LLAMA_BACKEND=cuda scripts/setup-llama.sh "$lib"
fi
export MDSA_LLAMA_LIB="$lib"
step hw.txt bin/mdsa hw
step hw.json bin/mdsa hw --json

export MDSA_TEST_GPU_LAYERS=-1
if [ -n "${GPU_CHECK_TESTS:-}" ]; then
	tests="$(cd "$(dirname "$GPU_CHECK_TESTS")" && pwd)/$(basename "$GPU_CHECK_TESTS")"
	step tests.txt bash -c "cd host/engine/llamacpp && '$tests' -test.v -test.count=1 -test.timeout=5m"
elif command -v go >/dev/null; then
	step tests.txt go test -count=1 -v -timeout=5m ./host/engine/llamacpp/
else
	echo "tests.txt rc=skipped (no Go and no GPU_CHECK_TESTS)" >>"$out/summary.txt"
fi
unset MDSA_TEST_GPU_LAYERS

printf '[engine]\ngpu_layers = -1\n' >"$work/gpu.toml"
printf '[engine]\ngpu_layers = 0\n' >"$work/cpu.toml"
for params in ${GPU_CHECK_PARAMS:-100000000 1000000000}; do
	model="$work/synth-$params.gguf"
	step "synth-$params.txt" bin/mdsa models synth --params "$params" "$model"
	for where in gpu cpu; do
		step "bench-$where-$params.json" bin/mdsa -c "$work/$where.toml" bench engine --model-file "$model" \
			--duration "${GPU_CHECK_DURATION:-5s}" --requests 30 --rounds 1 --decode-answers 4 --json
	done
done
rm -f "$work"/*.gguf
echo "gpu-check: done; exit codes in $out/summary.txt"
cat "$out/summary.txt"
