#!/usr/bin/env bash
# Installs what GradSketch needs on Debian/Ubuntu: HDF5 (library, headers, pkg-config file,
# h5dump for inspection), OpenBLAS for projections, zlib and the Fashion-MNIST dataset, a C
# compiler for the kernels, strace for the fault-injection test, GNU time for
# Benchmarks/engine.sh's peak-memory figures, valgrind for the C ABI test (Tests/C/run.sh), curl for the README's HTTP example,
# OpenMPI (mpirun and its headers: the distributed tool gradsketch-mpi) and iproute2 (ip netns: the multi-host MPI test),
# and the packages whose text the LM suite's corpus is built from (gradsketch.lm.corpus.CORPUS_PACKAGES);
# from pip: numpy + h5py (the tests' independent oracles and the Python reference reader),
# torch's CPU wheel, safetensors and pytest; and the Python package itself (python/, over
# libgradsketch-c.so, built in release). Safe to run again: it installs only what is missing,
# and reinstalls the Python package only when python/, Sources/ or Package.swift changed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

packages=(libhdf5-dev hdf5-tools libopenblas-dev zlib1g-dev dataset-fashion-mnist pkg-config gcc strace time valgrind curl openmpi-bin libopenmpi-dev iproute2)
# The corpus's packages have one list, CORPUS_PACKAGES in python/gradsketch/lm/corpus.py; it is
# read from the source (a literal tuple, parsed, not imported: the package is installed below).
corpus_packages="$(python3 - "$root/python/gradsketch/lm/corpus.py" <<'PY'
import ast, sys
path = sys.argv[1]
for node in ast.parse(open(path, encoding="utf-8").read()).body:
    target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
    if isinstance(target, ast.Name) and target.id == "CORPUS_PACKAGES":
        print(" ".join(ast.literal_eval(node.value)))
        break
else:
    sys.exit(f"setup: expected a literal CORPUS_PACKAGES = (...) in {path}, found none")
PY
)"
read -r -a corpus <<< "$corpus_packages"
packages+=("${corpus[@]}")
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

pip=(python3 -m pip install --quiet --disable-pip-version-check)
if ! python3 -c 'import numpy, h5py, safetensors, pytest, setuptools, wheel' >/dev/null 2>&1; then
  echo "setup: installing numpy, h5py, safetensors, pytest, setuptools and wheel with pip" >&2
  "${pip[@]}" numpy h5py safetensors pytest setuptools wheel
fi
# torch's CPU wheel (the default torch on PyPI is the CUDA build, several GB). pip's find-links,
# where a machine has them, are used as well as the index.
if ! python3 -c 'import torch' >/dev/null 2>&1; then
  echo "setup: installing torch (CPU wheel) with pip" >&2
  "${pip[@]}" --retries 1 torch --index-url https://download.pytorch.org/whl/cpu
fi

for library in hdf5 openblas zlib; do
  pkg-config --exists "$library" || { echo "setup: pkg-config cannot find $library after installing its -dev package" >&2; exit 1; }
done
# The Python package: `pip install ./python` builds libgradsketch-c.so in release and ships it
# inside the package. The stamp records the sources it was built from.
stamp="$root/.build/python-package.stamp"
sources="$(cd "$root" && { git ls-files -s python Sources Package.swift 2>/dev/null; git diff --no-ext-diff -- python Sources Package.swift 2>/dev/null; } | sha1sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$sources" ] || ! python3 -c 'import gradsketch' >/dev/null 2>&1; then
  echo "setup: installing the gradsketch Python package (builds libgradsketch-c in release)" >&2
  "${pip[@]}" --no-build-isolation --no-deps --force-reinstall "$root/python"
  mkdir -p "$root/.build" && echo "$sources" > "$stamp"
fi

echo "setup: ok (HDF5 $(pkg-config --modversion hdf5), $(python3 -c 'import numpy, h5py; print("numpy", numpy.__version__, "h5py", h5py.__version__)'), $(python3 -c 'import torch, gradsketch; print("torch", torch.__version__, "gradsketch", gradsketch.__version__)'))" >&2
