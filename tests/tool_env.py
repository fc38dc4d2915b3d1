"""The environment for programs the tests start that are not this Python: make, the
compilers, the C drivers and fuzzers, curl, wget, nginx, vsftpd, qemu.

The ASan pass (`make test-asan`) preloads gcc's libasan (and libcrypt) into Python
through LD_PRELOAD. That is for the interpreter alone: curl hangs under it, system make
trips its strict string checks, and libFuzzer binaries carry clang's own runtime.
`python -m fotabench` children keep the full environment instead (they need it)."""
from __future__ import annotations

import os


def tool_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    env.update(overrides)
    return env
