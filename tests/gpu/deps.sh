# shellcheck shell=bash disable=SC2034  # sourced: sets variables for its caller
# tests/gpu/deps.sh - sourced by the GPU scripts (from the repository root):
# unpacks the Debian packages in .debs/ (deploy/fetch-debs.sh) into a private
# prefix for a machine without a package registry, and sets
#   deps_root  the prefix (empty when there is no .debs/)
#   hy         a command prefix that runs hydra's programs with those libraries
#   py         a command prefix that runs $python without them (torch's own)
#   gpu_build  builds targets in build-gpu with CUDA
python=${python:-${PYTHON:-python3}}
arch=$(gcc -dumpmachine)
deps_root=""
if [ -d .debs ] && ls .debs/*.deb >/dev/null 2>&1; then
  deps_root=/opt/hydra-deps
  mkdir -p "$deps_root"
  for f in .debs/*.deb; do
    case $(basename "$f") in # runtime libraries the system may already have (keep its own)
    libgomp1_*) ldconfig -p | grep -q 'libgomp\.so\.1 ' && continue ;;
    libgfortran5_*) ldconfig -p | grep -q 'libgfortran\.so\.5 ' && continue ;;
    libquadmath0_*) ldconfig -p | grep -q 'libquadmath\.so\.0 ' && continue ;;
    esac
    dpkg -x "$f" "$deps_root"
  done
  lib_dir=$deps_root/usr/lib/$arch
  sed -i "s#^prefix=/usr#prefix=$deps_root/usr#" "$lib_dir"/pkgconfig/*.pc "$deps_root"/usr/share/pkgconfig/*.pc 2>/dev/null
  # hydra links libmicrohttpd dynamically: GnuTLS is only its runtime
  # dependency (unpacked above), and its development files are not needed
  sed -i '/^Requires.private: gnutls/d' "$lib_dir"/pkgconfig/libmicrohttpd.pc
  # likewise libcurl's own dependencies (the GPU suite does not build the CLI)
  sed -i '/^Requires.private:/d' "$lib_dir"/pkgconfig/libcurl.pc 2>/dev/null
  export PKG_CONFIG_PATH="$lib_dir/pkgconfig:$deps_root/usr/share/pkgconfig:${PKG_CONFIG_PATH:-}"
  export PKG_CONFIG_LIBDIR="$lib_dir/pkgconfig:$deps_root/usr/share/pkgconfig"
  export CMAKE_PREFIX_PATH="$deps_root/usr:${CMAKE_PREFIX_PATH:-}"
  export PATH="$PATH:$deps_root/usr/bin"
  command -v pkg-config >/dev/null || ln -sf "$deps_root/usr/bin/pkgconf" "$deps_root/usr/bin/pkg-config"
  # hydra's programs find these; python (torch) runs without them
  hydra_ld="$lib_dir:$lib_dir/openblas-openmp:${LD_LIBRARY_PATH:-}"
else
  hydra_ld=${LD_LIBRARY_PATH:-}
fi
export PATH=/usr/local/cuda/bin:$PATH
# hydra's programs run with the unpacked libraries; python (torch) without them
hy=(env "LD_LIBRARY_PATH=$hydra_ld")
py=(env -u LD_LIBRARY_PATH PYTHONUNBUFFERED=1 "$python")


# gpu_build TARGET...: configures build-gpu (CUDA, HYDRA_CUDA_ARCH, default 90)
# against the prefix and builds the targets.
gpu_build() {
  LD_LIBRARY_PATH=$hydra_ld cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DENABLE_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES="${HYDRA_CUDA_ARCH:-90}" ${deps_root:+-DHYDRA_DEPS_ROOT=$deps_root} &&
    LD_LIBRARY_PATH=$hydra_ld cmake --build build-gpu -j "$(nproc)" --target "$@"
}
