#!/usr/bin/env bash
# Installs the prebuilt llama.cpp shared libraries that yzma loads at run time
# into a project-local folder, choosing the build that fits this machine:
# CUDA, Vulkan or CPU. Idempotent, needs no root: it only uses npm to fetch
# @node-llama-cpp package tarballs (no install scripts run).
#
# Usage: scripts/setup-llama.sh [--print-backend | --download DIR] [DEST]
#   DEST             where the libraries go (default .deps/llama)
#   --print-backend  print the decision and why (key=value lines), install nothing
#   --download DIR   fetch the chosen build's package tarballs into DIR and stop,
#                    for a machine without the npm registry (see LLAMA_PACKAGES_DIR)
#
# Environment:
#   LLAMA_BACKEND      auto (default), cpu, cuda or vulkan. auto takes CUDA when
#                      nvidia-smi lists a GPU (or, without nvidia-smi, the driver
#                      lists one in /proc/driver/nvidia/gpus and /dev/nvidiaN
#                      exists) and the CUDA runtime (libcudart, libcublas,
#                      libcublasLt, major 13 or 12, plus the driver's libcuda.so.1)
#                      can be found; else Vulkan when the Vulkan loader
#                      libvulkan.so.1, a GPU driver manifest (ICD, not the
#                      llvmpipe software one) and a GPU (an accessible
#                      /dev/dri/renderD* node or a usable NVIDIA GPU) are there;
#                      else CPU. A GPU build that fails to download or lacks files
#                      falls back to CPU under auto; named explicitly, it fails.
#   LLAMA_NPM_VERSION  the @node-llama-cpp version (default 3.22.1, the one yzma
#                      v1.28.0 matches)
#   LLAMA_PACKAGES_DIR a folder holding the package tarballs as `npm pack` names
#                      them (node-llama-cpp-linux-x64-cuda-3.22.1.tgz, ...):
#                      installs from there, without npm or a network
#   LLAMA_PROBE_ROOT   directory that stands for / when probing /proc, /dev and
#                      library folders (tests); ldconfig's cache is read only
#                      for the real root
#   LLAMA_PROBE_ARCH   machine name instead of `uname -m` (tests)
#   nvidia-smi is looked up in PATH.
set -euo pipefail

version="${LLAMA_NPM_VERSION:-3.22.1}"
print_only=0
dest=""
download=""
packages_dir="${LLAMA_PACKAGES_DIR:-}"
while [ $# -gt 0 ]; do
	arg="$1"
	shift
	case "$arg" in
	--print-backend) print_only=1 ;;
	--download)
		if [ $# -eq 0 ] || [ -z "$1" ]; then
			echo "setup-llama: --download needs a folder" >&2
			exit 2
		fi
		download="$1"
		shift
		;;
	-h | --help)
		sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
		exit 0
		;;
	-*)
		echo "setup-llama: unknown option $arg (try --help)" >&2
		exit 2
		;;
	*) dest="$arg" ;;
	esac
done
dest="${dest:-.deps/llama}"

requested="${LLAMA_BACKEND:-auto}"
requested="${requested,,}"
case "$requested" in
auto | cpu | cuda | vulkan) ;;
*)
	echo "setup-llama: LLAMA_BACKEND=${LLAMA_BACKEND} is not a backend: use auto (the default), cpu, cuda or vulkan" >&2
	exit 2
	;;
esac

root="${LLAMA_PROBE_ROOT:-}"
root="${root%/}"
arch="${LLAMA_PROBE_ARCH:-$(uname -m)}"
case "$arch" in
x86_64 | amd64) arch=x86_64 triplet=x86_64-linux-gnu sub=linux-x64 ;;
aarch64 | arm64) arch=aarch64 triplet=aarch64-linux-gnu sub=linux-arm64 ;;
*)
	echo "setup-llama: no prebuilt llama.cpp package for $(uname -s)-$arch" >&2
	exit 1
	;;
esac

# CUDA driver versions the two CUDA builds need: the main package is built
# with CUDA 13 (driver 580 or newer), the -cuda-ext package's fallback build
# with CUDA 12 (driver 525 or newer).
min_driver_13=580
min_driver_12=525

skips=()    # why the backends not chosen were not
warnings=() # things the user should know about the choice

# trim S: S without leading and trailing blanks.
trim() {
	local s="$1"
	s="${s#"${s%%[![:space:]]*}"}"
	printf '%s' "${s%"${s##*[![:space:]]}"}"
}

# ---------------------------------------------------------------- probes

# find_lib NAME: sets lib_path to where the dynamic loader (or the CUDA
# toolkit's usual places) has NAME, and lib_std=1 when the loader finds it
# without help (a system library folder or ldconfig's cache). Returns 1
# when it is nowhere. Stub libraries (.../stubs/) never count.
find_lib() {
	local name="$1" d f line
	lib_path="" lib_std=1
	for d in "/lib/$triplet" "/usr/lib/$triplet" /lib64 /usr/lib64 /lib /usr/lib /usr/lib/wsl/lib \
		"/usr/lib/$triplet/nvidia/current"; do
		if [ -e "$root$d/$name" ]; then
			lib_path="$root$d/$name"
			return 0
		fi
	done
	for f in "$root"/etc/ld.so.conf.d/*.conf; do
		[ -f "$f" ] || continue
		while IFS= read -r line || [ -n "$line" ]; do
			line="${line%%#*}"
			line="${line//[[:space:]]/}"
			case "$line" in
			/*) if [ -e "$root$line/$name" ]; then
				lib_path="$root$line/$name"
				return 0
			fi ;;
			esac
		done <"$f"
	done
	if [ -z "$root" ]; then
		local ldconfig
		ldconfig="$(command -v ldconfig || true)"
		if [ -z "$ldconfig" ] && [ -x /sbin/ldconfig ]; then ldconfig=/sbin/ldconfig; fi
		if [ -n "$ldconfig" ]; then
			while IFS= read -r line; do
				case "$line" in
				*[[:space:]]"$name ("*"=> "*)
					lib_path="${line##*=> }"
					return 0
					;;
				esac
			done < <("$ldconfig" -p 2>/dev/null || true)
		fi
	fi
	lib_std=0
	local dirs=()
	local IFS=:
	for d in ${LD_LIBRARY_PATH:-}; do dirs+=("$d"); done
	unset IFS
	for d in "${CUDA_PATH:-}" "${CUDA_HOME:-}"; do
		if [ -n "$d" ]; then dirs+=("$d/lib64" "$d/lib" "$d"/targets/*/lib); fi
	done
	for d in "$root"/usr/local/cuda "$root"/usr/local/cuda-* "$root"/opt/cuda; do
		dirs+=("$d/lib64" "$d"/targets/*/lib)
	done
	for d in ${dirs[@]+"${dirs[@]}"}; do
		case "$d" in */stubs | */stubs/) continue ;; esac
		if [ -n "$d" ] && [ -e "$d/$name" ]; then
			lib_path="$d/$name"
			return 0
		fi
	done
	return 1
}

# probe_nvidia: sets nv_ok=1 with nv_desc (GPU names, driver version) when a
# usable NVIDIA GPU is there, else nv_ok=0 and nv_why. nv_driver is the
# driver's major version (0 when unknown), nv_cc the lowest compute
# capability as major*10+minor (0 when unknown).
probe_nvidia() {
	nv_ok=0 nv_desc="" nv_why="" nv_driver=0 nv_cc=0
	local version_file="$root/proc/driver/nvidia/version" driver="" line out rc names="" n=0
	if [ -r "$version_file" ]; then
		while IFS= read -r line; do
			if [[ $line =~ Kernel\ Module[^0-9]*([0-9]+)(\.[0-9.]+)? ]]; then
				driver="${BASH_REMATCH[1]}${BASH_REMATCH[2]}"
				nv_driver="${BASH_REMATCH[1]}"
				break
			fi
		done <"$version_file"
	fi
	if command -v nvidia-smi >/dev/null 2>&1; then
		rc=0
		out="$(nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv,noheader 2>&1)" || rc=$?
		if [ "$rc" -ne 0 ] && [[ $out == *compute_cap* ]]; then
			rc=0 # a driver older than compute_cap: ask without it
			out="$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1)" || rc=$?
		fi
		if [ "$rc" -ne 0 ]; then
			line="${out%%$'\n'*}"
			nv_why="nvidia-smi failed (exit $rc: ${line:-no output})"
			if [ -e "$root/dev/nvidia0" ]; then nv_why="$nv_why although /dev/nvidia0 exists"; fi
			return
		fi
		local name drv cc
		while IFS= read -r line; do
			[ -n "${line// /}" ] || continue
			IFS=, read -r name drv cc <<<"$line"
			name="$(trim "$name")" drv="$(trim "$drv")" cc="$(trim "${cc:-}")"
			[ -n "$name" ] || continue
			n=$((n + 1))
			names="${names:+$names, }$name"
			[ -n "$driver" ] || driver="$drv"
			if [[ $drv =~ ^([0-9]+) ]] && [ "$nv_driver" -eq 0 ]; then nv_driver="${BASH_REMATCH[1]}"; fi
			if [[ $cc =~ ^([0-9]+)\.([0-9]) ]]; then
				cc=$((BASH_REMATCH[1] * 10 + BASH_REMATCH[2]))
				if [ "$nv_cc" -eq 0 ] || [ "$cc" -lt "$nv_cc" ]; then nv_cc=$cc; fi
			fi
		done <<<"$out"
		if [ "$n" -eq 0 ]; then
			nv_why="nvidia-smi lists no GPU"
			return
		fi
		nv_ok=1 nv_desc="$n NVIDIA GPU(s) ($names), driver ${driver:-unknown}, listed by nvidia-smi"
		return
	fi
	if [ -z "$driver" ]; then
		nv_why="no NVIDIA driver (no nvidia-smi in PATH, no $root/proc/driver/nvidia/version)"
		return
	fi
	local g
	for g in "$root"/proc/driver/nvidia/gpus/*/information; do
		[ -r "$g" ] || continue
		while IFS= read -r line; do
			if [[ $line =~ ^Model:[[:space:]]*(.*)$ ]]; then
				n=$((n + 1))
				names="${names:+$names, }${BASH_REMATCH[1]}"
			fi
		done <"$g"
	done
	local nodes=("$root"/dev/nvidia[0-9]*)
	if [ "$n" -eq 0 ]; then
		nv_why="NVIDIA driver $driver is loaded but lists no GPU in $root/proc/driver/nvidia/gpus"
	elif [ ! -e "${nodes[0]}" ]; then
		nv_why="NVIDIA driver $driver lists $names but there is no $root/dev/nvidiaN device node (a container without the GPU?)"
	else
		nv_ok=1 nv_desc="$n NVIDIA GPU(s) ($names), driver $driver, from $root/proc/driver/nvidia (no nvidia-smi in PATH)"
	fi
}

# probe_cuda_runtime MAJOR: sets cuda_libs to the runtime libraries found
# for that CUDA major version and returns 0 when all are there; else sets
# cuda_missing. Sets cuda_links to those found outside the loader's default
# path (to be linked next to libggml-cuda.so, whose RUNPATH is $ORIGIN).
probe_cuda_runtime() {
	local major="$1" name
	cuda_libs="" cuda_missing="" cuda_links=()
	for name in "libcudart.so.$major" "libcublas.so.$major" "libcublasLt.so.$major"; do
		if find_lib "$name"; then
			cuda_libs="${cuda_libs:+$cuda_libs, }$lib_path"
			[ "$lib_std" = 1 ] || cuda_links+=("$lib_path")
		else
			cuda_missing="${cuda_missing:+$cuda_missing, }$name"
		fi
	done
	[ -z "$cuda_missing" ]
}

# choose_cuda_major: sets cuda_major to 13 or 12 when a CUDA runtime that the
# driver and the GPUs support is there, else to "" with cuda_why.
choose_cuda_major() {
	cuda_major="" cuda_why=""
	local why13="" why12=""
	if ! find_lib libcuda.so.1; then
		cuda_why="the NVIDIA driver's libcuda.so.1 is not in the library path"
		return
	fi
	if probe_cuda_runtime 13; then
		if [ "$nv_driver" -gt 0 ] && [ "$nv_driver" -lt "$min_driver_13" ]; then
			why13="CUDA 13 runtime found but driver $nv_driver is older than $min_driver_13"
		elif [ "$nv_cc" -gt 0 ] && [ "$nv_cc" -lt 75 ]; then
			why13="CUDA 13 runtime found but the CUDA 13 build needs compute capability 7.5 or newer"
		else
			cuda_major=13
			return
		fi
	else
		why13="no CUDA 13 runtime ($cuda_missing)"
	fi
	if probe_cuda_runtime 12; then
		if [ "$nv_driver" -gt 0 ] && [ "$nv_driver" -lt "$min_driver_12" ]; then
			why12="CUDA 12 runtime found but driver $nv_driver is older than $min_driver_12"
		else
			cuda_major=12
			return
		fi
	else
		why12="no CUDA 12 runtime ($cuda_missing)"
	fi
	cuda_why="$why13; $why12. The driver alone does not ship these libraries: install the CUDA runtime and cuBLAS (e.g. the CUDA toolkit, or Debian/Ubuntu's libcudart12 and libcublas12) or put them on LD_LIBRARY_PATH"
}

# probe_vulkan: sets vk_ok=1 with vk_desc when the Vulkan build can use a
# GPU here, else vk_ok=0 and vk_why.
probe_vulkan() {
	vk_ok=0 vk_desc="" vk_why=""
	if [ "$arch" != x86_64 ]; then
		vk_why="no Vulkan build of llama.cpp for $sub"
		return
	fi
	if ! find_lib libvulkan.so.1; then
		vk_why="no Vulkan loader libvulkan.so.1 (Debian/Ubuntu: libvulkan1)"
		return
	fi
	local loader="$lib_path" icds=() f icd="" lvp=0 list
	for list in "${VK_DRIVER_FILES:-}" "${VK_ICD_FILENAMES:-}"; do
		local IFS=:
		for f in $list; do icds+=("$f"); done
		unset IFS
	done
	icds+=("$root"/etc/vulkan/icd.d/*.json "$root"/usr/share/vulkan/icd.d/*.json "$root"/usr/local/share/vulkan/icd.d/*.json)
	for f in "${icds[@]}"; do
		[ -e "$f" ] || continue
		case "${f##*/}" in
		lvp_icd* | *llvmpipe* | *swiftshader*) lvp=1 ;;
		*) icd="${icd:+$icd, }${f##*/}" ;;
		esac
	done
	if [ -z "$icd" ]; then
		vk_why="Vulkan loader found but no GPU driver manifest in $root/etc/vulkan/icd.d or $root/usr/share/vulkan/icd.d"
		if [ "$lvp" = 1 ]; then vk_why="$vk_why (only the llvmpipe software rasterizer, slower than the CPU build)"; fi
		vk_why="$vk_why; install your GPU's Vulkan driver (Debian/Ubuntu: mesa-vulkan-drivers for AMD/Intel)"
		return
	fi
	local node gpu=""
	for node in "$root"/dev/dri/renderD*; do
		[ -e "$node" ] || continue
		if [ -r "$node" ] && [ -w "$node" ]; then
			gpu="render node ${node#"$root"}"
			break
		fi
		vk_why="GPU render node ${node#"$root"} is not readable and writable by $(id -un 2>/dev/null || echo this user) (add it to the render group)"
	done
	if [ -z "$gpu" ] && [ "$nv_ok" = 1 ]; then
		gpu="the NVIDIA GPU"
	fi
	if [ -z "$gpu" ]; then
		[ -n "$vk_why" ] || vk_why="Vulkan loader and driver manifest ($icd) found but no GPU render node ($root/dev/dri/renderD*)"
		return
	fi
	vk_ok=1 vk_desc="Vulkan loader ${loader#"$root"}, driver manifest $icd, $gpu"
}

# ---------------------------------------------------------------- decision

# decide: sets backend (cpu, cuda, vulkan), cuda_major (13, 12 or "") and
# reason; adds to skips and warnings.
decide() {
	backend="" cuda_major="" reason=""
	cuda_links=()
	if [ "$arch" != x86_64 ]; then
		case "$requested" in
		cuda | vulkan)
			echo "setup-llama: LLAMA_BACKEND=$requested: there is no $requested build of llama.cpp for $sub (only x86-64 has GPU builds)" >&2
			exit 1
			;;
		esac
		backend=cpu
		if [ "$requested" = cpu ]; then
			reason="LLAMA_BACKEND=cpu"
		else
			reason="the GPU builds of llama.cpp exist for x86-64 only, this is $sub"
		fi
		return
	fi

	probe_nvidia
	local cuda_ok=0 cuda_detail=""
	if [ "$nv_ok" = 1 ]; then
		choose_cuda_major
		if [ -n "$cuda_major" ]; then
			cuda_ok=1 cuda_detail="$nv_desc; CUDA $cuda_major runtime: $cuda_libs"
		fi
	fi
	probe_vulkan

	case "$requested" in
	cpu)
		backend=cpu reason="LLAMA_BACKEND=cpu"
		return
		;;
	cuda)
		backend=cuda reason="LLAMA_BACKEND=cuda"
		if [ "$cuda_ok" = 1 ]; then
			reason="$reason; $cuda_detail"
		else
			# No usable runtime found: take the CUDA 12 build only when that
			# runtime alone is there, else the current one (13).
			cuda_major=13
			if probe_cuda_runtime 12 && ! probe_cuda_runtime 13; then cuda_major=12; fi
			probe_cuda_runtime "$cuda_major" || true
			if [ "$nv_ok" != 1 ]; then
				warnings+=("no usable NVIDIA GPU: $nv_why")
			else
				warnings+=("$nv_desc, but ${cuda_why:-no CUDA runtime}")
			fi
			warnings+=("llama.cpp skips the CUDA back-end (silently) and runs on the CPU until libcudart.so.$cuda_major, libcublas.so.$cuda_major and libcublasLt.so.$cuda_major and a GPU can be loaded")
		fi
		return
		;;
	vulkan)
		backend=vulkan reason="LLAMA_BACKEND=vulkan"
		if [ "$vk_ok" = 1 ]; then
			reason="$reason; $vk_desc"
		else
			warnings+=("$vk_why")
			warnings+=("llama.cpp runs on the CPU until the Vulkan back-end finds a GPU")
		fi
		return
		;;
	esac

	if [ "$cuda_ok" = 1 ]; then
		backend=cuda reason="$cuda_detail"
		if [ "$vk_ok" = 1 ]; then skips+=("vulkan: usable too ($vk_desc), CUDA preferred"); fi
		return
	fi
	if [ "$nv_ok" = 1 ]; then
		skips+=("cuda: $nv_desc, but $cuda_why")
	else
		skips+=("cuda: $nv_why")
	fi
	if [ "$vk_ok" = 1 ]; then
		backend=vulkan reason="$vk_desc"
		return
	fi
	skips+=("vulkan: $vk_why")
	backend=cpu reason="no GPU build of llama.cpp fits this machine"
}

# packages BUILD: the npm packages a build needs, space-separated.
packages() {
	case "$1" in
	cpu) echo "@node-llama-cpp/$sub" ;;
	vulkan) echo "@node-llama-cpp/linux-x64-vulkan" ;;
	cuda-13) echo "@node-llama-cpp/linux-x64-cuda" ;;
	cuda-12) echo "@node-llama-cpp/linux-x64-cuda @node-llama-cpp/linux-x64-cuda-ext" ;;
	esac
}

# ---------------------------------------------------------------- install

# required_files BUILD: files an installed build must have (besides a
# libggml-cpu*.so variant).
required_files() {
	local files="libllama.so libggml.so libggml-base.so"
	case "$1" in
	vulkan) files="$files libggml-vulkan.so" ;;
	cuda-*) files="$files libggml-cuda.so" ;;
	esac
	echo "$files"
}

# check_dir DIR BUILD: returns 0 when DIR holds BUILD completely, else sets
# missing.
check_dir() {
	local dir="$1" f cpus
	missing=""
	for f in $(required_files "$2"); do
		[ -e "$dir/$f" ] || missing="${missing:+$missing, }$f"
	done
	cpus=("$dir"/libggml-cpu*.so)
	[ -e "${cpus[0]}" ] || missing="${missing:+$missing, }libggml-cpu*.so"
	[ -z "$missing" ]
}

# tarball_name PKG: the file `npm pack PKG@version` writes.
tarball_name() {
	local name="${1#@}"
	echo "${name//\//-}-$version.tgz"
}

# fetch PKG DIR: unpacks PKG@version into DIR/package, or sets fail and
# returns 1. The tarball comes from LLAMA_PACKAGES_DIR when that is set,
# else from npm.
fetch() {
	local pkg="$1" dir="$2" tgz
	mkdir -p "$dir"
	if [ -n "$packages_dir" ]; then
		tgz="$packages_dir/$(tarball_name "$pkg")"
		if [ ! -f "$tgz" ]; then
			fail="LLAMA_PACKAGES_DIR has no $tgz (make it where the npm registry is reachable: npm pack $pkg@$version, or scripts/setup-llama.sh --download DIR)"
			return 1
		fi
		cp "$tgz" "$dir/"
	elif ! (cd "$dir" && npm pack --silent "$pkg@$version" >/dev/null 2>npm.err); then
		fail="npm pack $pkg@$version failed: $(tail -n 3 "$dir/npm.err" | tr '\n' ' ')"
		return 1
	fi
	tgz=("$dir"/*.tgz)
	if [ ! -f "${tgz[0]}" ] || ! tar -xzf "${tgz[0]}" -C "$dir"; then
		fail="$pkg@$version: could not unpack its tarball"
		return 1
	fi
}

# stage BUILD DIR: fetches the packages of BUILD and lays its libraries out in
# DIR as yzma expects them, or sets fail and returns 1.
stage() {
	local build="$1" out="$2" src flavour lib f
	fail=""
	local tmp="$work/$build"
	case "$build" in
	cpu) src="bins/$sub" flavour="" ;;
	vulkan) src="bins/linux-x64-vulkan" flavour="vulkan." ;;
	cuda-*) src="bins/linux-x64-cuda" flavour="cuda." ;;
	esac
	local pkg i=0
	for pkg in $(packages "$build"); do
		fetch "$pkg" "$tmp/$i" || return 1
		i=$((i + 1))
	done
	mkdir -p "$out"
	local sos=("$tmp/0/package/$src"/*.so)
	if [ ! -e "${sos[0]}" ]; then
		fail="$(packages "$build" | cut -d' ' -f1)@$version has no $src/*.so"
		return 1
	fi
	cp "${sos[@]}" "$out"/
	if [ "$build" = cuda-12 ]; then
		# The CUDA 12 back-end of the -cuda-ext package replaces the CUDA 13 one.
		f="$tmp/1/package/$src/fallback/libggml-cuda.so"
		if [ ! -f "$f" ]; then
			fail="@node-llama-cpp/linux-x64-cuda-ext@$version has no $src/fallback/libggml-cuda.so"
			return 1
		fi
		cp "$f" "$out/libggml-cuda.so"
	fi
	# yzma opens libllama.so, libggml.so and libggml-base.so; the packages
	# name the first two by flavour and ABI version.
	for lib in libllama libggml; do
		f=("$out/$lib.${flavour}"v*.so)
		if [ -e "${f[0]}" ]; then
			ln -sf "${f[0]##*/}" "$out/$lib.so"
		fi
	done
	if [ "${build%-*}" = cuda ]; then
		for f in ${cuda_links[@]+"${cuda_links[@]}"}; do
			ln -sf "$f" "$out/${f##*/}"
		done
	fi
	if ! check_dir "$out" "$build"; then
		fail="$(packages "$build") (version $version) lack $missing"
		return 1
	fi
}

# install BUILD: stages BUILD beside DEST and swaps it in, or sets fail and
# returns 1 leaving DEST as it was.
install() {
	local build="$1"
	staging="$(mktemp -d "$parent/.llama-stage.XXXXXX")"
	if ! stage "$build" "$staging"; then
		rm -rf "$staging"
		return 1
	fi
	if ! mkdir -p "$dest" || ! rm -f "$dest"/*.so "$dest"/*.so.* "$dest"/.installed-* ||
		! mv "$staging"/* "$dest"/ || ! check_dir "$dest" "$build"; then
		fail="could not move the libraries into $dest${missing:+ (missing $missing)}"
		return 1
	fi
	rmdir "$staging"
	{
		echo "version=$version"
		echo "backend=${build%-*}"
		if [ "${build%-*}" = cuda ]; then echo "cuda=${build#cuda-}"; fi
		echo "packages=$(packages "$build")"
		echo "reason=$2"
	} >"$dest/.installed-$version-$build"
}

# installed BUILD: whether DEST already holds BUILD of this version.
installed() {
	[ -f "$dest/.installed-$version-$1" ] && check_dir "$dest" "$1"
}

# ---------------------------------------------------------------- main

decide
build="$backend"
if [ "$backend" = cuda ]; then build="cuda-$cuda_major"; fi

if [ "$print_only" = 1 ]; then
	echo "backend=$backend"
	if [ "$backend" = cuda ]; then echo "cuda=$cuda_major"; fi
	echo "requested=$requested"
	echo "packages=$(packages "$build")"
	echo "reason=$reason"
	for s in ${skips[@]+"${skips[@]}"}; do echo "skip=$s"; done
	for w in ${warnings[@]+"${warnings[@]}"}; do echo "warning=$w"; done
	if [ "$backend" = cuda ]; then
		for l in ${cuda_links[@]+"${cuda_links[@]}"}; do echo "link=$l"; done
	fi
	exit 0
fi

label="$backend"
if [ "$backend" = cuda ]; then label="CUDA $cuda_major"; fi
echo "setup-llama: $label build (LLAMA_BACKEND=$requested): $reason"
for s in ${skips[@]+"${skips[@]}"}; do echo "setup-llama:   not $s"; done
for w in ${warnings[@]+"${warnings[@]}"}; do echo "setup-llama: warning: $w" >&2; done

if [ -n "$download" ]; then
	command -v npm >/dev/null || {
		echo "setup-llama: npm is needed to download $(packages "$build")" >&2
		exit 1
	}
	mkdir -p "$download"
	for pkg in $(packages "$build"); do
		if ! (cd "$download" && npm pack --silent "$pkg@$version" >/dev/null); then
			echo "setup-llama: npm pack $pkg@$version failed" >&2
			exit 1
		fi
		echo "setup-llama: downloaded $download/$(tarball_name "$pkg")"
	done
	echo "setup-llama: install elsewhere with LLAMA_PACKAGES_DIR=<that folder> LLAMA_BACKEND=$backend make setup"
	exit 0
fi

if installed "$build"; then
	echo "llama.cpp libraries $version ($label) already in $dest"
	exit 0
fi

if [ -z "$packages_dir" ]; then
	command -v npm >/dev/null || {
		echo "setup-llama: npm is needed to fetch $(packages "$build") (or set LLAMA_PACKAGES_DIR to a folder of their tarballs)" >&2
		exit 1
	}
elif [ ! -d "$packages_dir" ]; then
	echo "setup-llama: LLAMA_PACKAGES_DIR=$packages_dir is not a folder" >&2
	exit 1
fi

parent="$(dirname "$dest")"
mkdir -p "$parent"
work="$(mktemp -d)"
staging=""
trap 'rm -rf "$work" ${staging:+"$staging"}' EXIT

if install "$build" "$reason"; then
	echo "llama.cpp libraries $version ($label) installed in $dest"
	exit 0
fi
if [ "$backend" = cpu ] || [ "$requested" != auto ]; then
	echo "setup-llama: could not install the $label build: $fail" >&2
	exit 1
fi
echo "setup-llama: could not install the $label build ($fail); falling back to the CPU build" >&2
if installed cpu; then
	echo "llama.cpp libraries $version (cpu) already in $dest"
	exit 0
fi
if ! install cpu "fallback: the $label build could not be installed: $fail"; then
	echo "setup-llama: could not install the CPU build either: $fail" >&2
	exit 1
fi
echo "llama.cpp libraries $version (cpu) installed in $dest"
