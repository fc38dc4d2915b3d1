"""Fuzz smoke: each libFuzzer target in native/fuzz/ runs briefly from the seed corpus.

A target abort()s on any invariant violation and ASan/UBSan stop it on memory errors, so
exit status 0 means no problem was found in the time given. Longer runs: `make fuzz`
(FUZZ_SECONDS per target), or by hand:

    make -C native fuzz
    python3 native/fuzz/make_corpus.py /tmp/seeds
    native/build/fuzz/fuzz_url -max_total_time=600 /tmp/seeds/fuzz_url

Skipped without a clang that links -fsanitize=fuzzer, and in the ASan pass
(FOTABENCH_SANITIZE=1, `make test-asan`): the targets carry their own sanitizers and
the normal pass has already run them.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tool_env import tool_env

ROOT = Path(__file__).resolve().parent.parent
NATIVE = ROOT / "native"
FUZZ_BIN = NATIVE / "build" / "fuzz"
TARGETS = ["fuzz_appimage", "fuzz_package", "fuzz_url", "fuzz_at", "fuzz_vline", "fuzz_dafile",
           "fuzz_flash_answers"]
SECONDS = 20
TAIL_LINES = 60

pytestmark = pytest.mark.fuzz


def tail(text, lines=TAIL_LINES):
    return "\n".join(text.splitlines()[-lines:])


@pytest.fixture(scope="session")
def fuzz_build(tmp_path_factory):
    if os.environ.get("FOTABENCH_SANITIZE", "") not in ("", "0"):
        pytest.skip("FOTABENCH_SANITIZE=1 (ASan pass): the fuzz targets carry their own "
                    "ASan/UBSan and the smoke has already run in the normal pass")
    cc = os.environ.get("FUZZ_CC", "clang")
    if not shutil.which(cc):
        pytest.skip(f"{cc} not found: libFuzzer targets need clang (apt install clang)")
    probe = tmp_path_factory.mktemp("fuzz-probe")
    src = probe / "probe.c"
    src.write_text("#include <stddef.h>\n#include <stdint.h>\n"
                   "int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);\n"
                   "int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)"
                   "{ (void)d; (void)n; return 0; }\n")
    run = subprocess.run([cc, "-fsanitize=fuzzer,address,undefined", str(src), "-o",
                          str(probe / "probe")], capture_output=True, text=True,
                         env=tool_env(), timeout=120)
    if run.returncode != 0:
        pytest.skip(f"{cc} cannot build a -fsanitize=fuzzer program (libFuzzer runtime "
                    f"missing?):\n{tail(run.stderr, 10)}")
    build = subprocess.run(["make", "-s", "-C", str(NATIVE), "fuzz"], capture_output=True,
                           text=True, env=tool_env(), timeout=600)
    assert build.returncode == 0, f"make -C native fuzz failed:\n{build.stdout}{build.stderr}"
    return FUZZ_BIN


@pytest.fixture(scope="session")
def seed_corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("fuzz-seeds")
    run = subprocess.run([sys.executable, str(NATIVE / "fuzz" / "make_corpus.py"), str(out)],
                         capture_output=True, text=True, env=tool_env(), timeout=120)
    assert run.returncode == 0, f"make_corpus.py failed:\n{run.stdout}{run.stderr}"
    return out


@pytest.mark.parametrize("target", TARGETS)
def test_fuzz_target(target, fuzz_build, seed_corpus, tmp_path):
    binary = fuzz_build / target
    assert binary.exists(), f"{binary} was not built by make -C native fuzz"
    # libFuzzer adds what it finds to the first directory: a private copy of the seeds.
    corpus = tmp_path / "corpus"
    shutil.copytree(seed_corpus / target, corpus)
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    args = [str(binary), f"-max_total_time={SECONDS}", "-timeout=10",
            "-print_final_stats=1", f"-artifact_prefix={artifacts}/", str(corpus)]
    run = subprocess.run(args, capture_output=True, text=True, errors="replace",
                         env=tool_env(), timeout=SECONDS + 120)
    found = sorted(p.name for p in artifacts.iterdir())
    assert run.returncode == 0, (
        f"{target} exited with {run.returncode}; reproduce with `{binary} "
        f"{artifacts}/<artifact>` (artifacts: {found})\n"
        f"--- last {TAIL_LINES} lines of output ---\n{tail(run.stdout + run.stderr)}")
    assert "Done" in run.stderr or "stat::number_of_executed_units" in run.stderr, \
        tail(run.stderr)
