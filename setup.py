"""Build of fotabench: the C core (native/) as a static library, linked into the
CPython extension fotabench._core (pymodule/ext/), under the Python package
(pymodule/fotabench/).

System libraries come from pkg-config; a missing one stops the build with the
Debian/Ubuntu package that provides it. Environment switches:
  FOTABENCH_WERROR=1    warnings are errors (CI; never for users' builds)
  FOTABENCH_SANITIZE=1  AddressSanitizer + UBSan (make test-asan)

A wheel (or any non-editable install) also carries the virtual module: the board program
and ready bench-agent app images (v1.0.0, v2.0.0 for every model in firmware/Makefile's
MODELS), built from firmware/ with make into fotabench/_firmware/. An editable install
(make build) leaves them out: fotabench.sim uses the checkout's firmware/build.
"""
import os
import shlex
import shutil
import subprocess
import sys
from glob import glob

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

# (pkg-config name, minimum version, Debian/Ubuntu package, hint)
SYSTEM_LIBS = [
    ("libcrypto", None, "libssl-dev", ""),
    ("libserialport", None, "libserialport-dev", ""),
    ("libgpiod", "2.0", "libgpiod-dev",
     " (version 2: on Debian 12 from bookworm-backports, `make build` sets that up)"),
]


def pkg_config(*args):
    return subprocess.run(["pkg-config", *args], capture_output=True, text=True)


def system_flags():
    if shutil.which("pkg-config") is None:
        sys.exit("fotabench: pkg-config not found; install it with `apt-get install pkg-config`")
    cflags, libs, missing = [], [], []
    for name, minimum, deb, hint in SYSTEM_LIBS:
        query = f"{name} >= {minimum}" if minimum else name
        if pkg_config("--exists", query).returncode != 0:
            have = pkg_config("--modversion", name)
            found = f" (found {have.stdout.strip()})" if have.returncode == 0 else ""
            missing.append(f"  {query}{found}: apt-get install {deb}{hint}")
            continue
        cflags += shlex.split(pkg_config("--cflags", name).stdout)
        libs += shlex.split(pkg_config("--libs", name).stdout)
    if missing:
        sys.exit("fotabench: missing system libraries:\n" + "\n".join(missing))
    return cflags, libs


def flag(name):
    return os.environ.get(name, "") not in ("", "0")


cflags, libs = system_flags()
warn = ["-Wall", "-Wextra"] + (["-Werror"] if flag("FOTABENCH_WERROR") else [])
san = (["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
        "-fno-omit-frame-pointer"] if flag("FOTABENCH_SANITIZE") else [])

core_lib = ("fotabench_core", {
    "sources": sorted(glob("native/src/*.c")),
    "include_dirs": ["native/include", "native/src"],
    "cflags": ["-std=c11", "-D_POSIX_C_SOURCE=200809L", "-fPIC", *warn, "-Wshadow",
               *san, *cflags],
})

ext = Extension(
    "fotabench._core",
    sources=sorted(glob("pymodule/ext/*.c")),
    include_dirs=["native/include", "pymodule/ext"],
    extra_compile_args=["-std=c11", *warn, *san, *cflags],
    extra_link_args=[*san, *libs],
    depends=sorted(glob("native/include/fotabench/*.h") + glob("native/src/*")
                   + glob("pymodule/ext/*.h")),
)

class build_py_firmware(build_py):
    """build_py, then `make -C firmware bundle` into the package's _firmware/."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return  # the checkout's firmware/build is used (fotabench.sim)
        if shutil.which("make") is None:
            sys.exit("fotabench: make not found (the virtual module is built with make and "
                     "cc); install it with `apt-get install make build-essential`")
        dest = os.path.abspath(os.path.join(self.build_lib, "fotabench", "_firmware"))
        if os.path.isdir(dest):
            shutil.rmtree(dest)  # never ship images of a model no longer in MODELS
        here = os.path.dirname(os.path.abspath(__file__))
        cmd = ["make", "-s", "-C", os.path.join(here, "firmware"), "bundle", f"DEST={dest}"]
        if flag("FOTABENCH_WERROR"):
            cmd.append("WERROR=1")
        env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
        subprocess.run(cmd, check=True, env=env)


setup(
    libraries=[core_lib],
    ext_modules=[ext],
    cmdclass={"build_py": build_py_firmware},
    # The sanitized build has a build directory of its own: setuptools reuses objects by
    # time stamp, not by flags, so a later `pip wheel .` would otherwise ship the ASan
    # extension of `make test-asan` (and the other way round).
    options={"build": {"build_base": "build/asan" if flag("FOTABENCH_SANITIZE") else "build"}},
)
