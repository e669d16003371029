#!/usr/bin/env bash
# Installs what GradSketch needs on Debian/Ubuntu: HDF5 (library, headers, pkg-config file,
# h5dump for inspection), OpenBLAS for projections, zlib and the Fashion-MNIST dataset, a C compiler for the kernels, and numpy + h5py for the tests'
# independent oracles and the Python reference reader, strace for the fault-injection test, GNU time for Benchmarks/engine.sh's peak-memory figures, valgrind for the C ABI test (Tests/C/run.sh), curl for the README's HTTP example. Safe to run again: it installs only
# what is missing.
set -euo pipefail

packages=(libhdf5-dev hdf5-tools libopenblas-dev zlib1g-dev dataset-fashion-mnist pkg-config gcc strace time valgrind curl)
missing=()
for package in "${packages[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "setup: installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! python3 -c 'import numpy, h5py' >/dev/null 2>&1; then
  echo "setup: installing numpy and h5py with pip" >&2
  python3 -m pip install --quiet --disable-pip-version-check numpy h5py
fi

for library in hdf5 openblas zlib; do
  pkg-config --exists "$library" || { echo "setup: pkg-config cannot find $library after installing its -dev package" >&2; exit 1; }
done
echo "setup: ok (HDF5 $(pkg-config --modversion hdf5), $(python3 -c 'import numpy, h5py; print("numpy", numpy.__version__, "h5py", h5py.__version__)'))" >&2
