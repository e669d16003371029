"""Build hook: compiles the engine's C library and ships it inside the package.

`pip install ./python` (in-tree build, with or without build isolation) and editable installs
run `swift build -c release --product gradsketch-c --package-path <repo>` (repo = the parent
of this directory, or env GRADSKETCH_REPO); a regular install copies libgradsketch-c.so into
gradsketch/_lib/, an editable one loads it from <repo>/.build/release (no stale copy).
When env GRADSKETCH_LIBRARY names a library, the build is skipped and that file is shipped
instead (gradsketch also loads GRADSKETCH_LIBRARY at run time when it is set).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
LIBRARY_NAME = "libgradsketch-c.dylib" if sys.platform == "darwin" else "libgradsketch-c.so"


def built_library() -> Path:
    """The library to ship: GRADSKETCH_LIBRARY, or a fresh release build of the repo."""
    given = os.environ.get("GRADSKETCH_LIBRARY")
    if given:
        path = Path(given)
        if not path.is_file():
            raise RuntimeError(f"GRADSKETCH_LIBRARY={given} is not a file")
        return path
    repo = Path(os.environ.get("GRADSKETCH_REPO", HERE.parent)).resolve()
    if not (repo / "Package.swift").is_file():
        raise RuntimeError(
            f"expected the GradSketch Swift package at {repo} (Package.swift not found); build "
            "from the repository's python/ directory, set GRADSKETCH_REPO, or set "
            "GRADSKETCH_LIBRARY to a built libgradsketch-c")
    command = ["swift", "build", "-c", "release", "--product", "gradsketch-c", "--package-path", str(repo)]
    print("gradsketch: " + " ".join(command), flush=True)
    subprocess.run(command, check=True)
    bin_path = subprocess.run(
        ["swift", "build", "-c", "release", "--package-path", str(repo), "--show-bin-path"],
        check=True, capture_output=True, text=True).stdout.strip()
    return Path(bin_path) / LIBRARY_NAME


class BuildWithLibrary(build_py):
    """build_py that also places the native library in gradsketch/_lib/."""

    def run(self) -> None:
        super().run()
        library = built_library()
        if getattr(self, "editable_mode", False):
            # An editable install imports the checkout, which finds <repo>/.build/release (or
            # GRADSKETCH_LIBRARY) at run time; a copy in gradsketch/_lib would go stale (and win
            # the lookup) at the next `swift build`.
            print(f"gradsketch: editable install; the checkout loads {library.parent} at run time", flush=True)
            return
        target = Path(self.build_lib) / "gradsketch" / "_lib"
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(library, target / LIBRARY_NAME)
        print(f"gradsketch: shipped {library} as {target / LIBRARY_NAME}", flush=True)


class BinaryDistribution(Distribution):
    """The wheel carries a native library, so it is platform specific."""

    def has_ext_modules(self) -> bool:
        return True


setup(cmdclass={"build_py": BuildWithLibrary}, distclass=BinaryDistribution)
