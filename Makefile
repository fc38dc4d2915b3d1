# fotabench: the two commands a newcomer needs are `make demo` and `make test`.
# Each installs what is missing (apt packages, a .venv/ with the package and its test
# dependencies), builds, then runs; run again with nothing changed, they only run.
#
#   make build      install and build only
#   make demo       a simulated station: 8 virtual modules (5 models, HTTP and FTP) upgraded
#                   at once, faults injected and each detected as the right outcome
#   make demo-packaging  the packaging pipeline step by step on a sample app
#   make test       every test (C drivers, Python, CLI, fuzz smoke, virtual module,
#                   package servers, qemu lane) in one pytest run
#   make test-asan  the same with the C core and extension under ASan + UBSan
#   make bench      benchmarks in bench/perf/ (prints figures)
#   make fuzz       longer libFuzzer runs (FUZZ_SECONDS per target, default 60)
#   make check-fresh  `make demo` and `make test` of this commit in a fresh Debian root
#                   (mmdebstrap, chroot; root needed): the README on a clean machine
#   make check-wheel  `pip wheel .` installed in a fresh venv outside the checkout, and a
#                   virtual upgrade run from there

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
ASAN_VENV := .venv-asan
ASAN_PY := $(ASAN_VENV)/bin/python
PIP_OPTS := -q --disable-pip-version-check
# CI turns warnings into errors; users' builds never fail on a new compiler's warning.
ifeq ($(CI),true)
export FOTABENCH_WERROR := 1
endif

SOURCES := setup.py pyproject.toml $(wildcard native/src/*.c native/src/*.h \
           native/include/fotabench/*.h pymodule/ext/*.c pymodule/ext/*.h)
TEST_DEPS := pytest pytest-xdist hypothesis mypy types-PyYAML types-jsonschema junitparser httpx

.PHONY: all build deps test-deps demo demo-packaging test test-asan bench fuzz clean check-fresh \
        check-wheel
all: build

deps:
	@bash .ci/install-deps

# Tests also need clang and libFuzzer, the ARM compiler, nginx/vsftpd/curl/wget and qemu.
test-deps:
	@bash .ci/install-deps --test

$(VENV)/.created: Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(PIP_OPTS) --upgrade pip 'setuptools>=77' wheel $(TEST_DEPS)
	@touch $@

# Editable install: Python changes need nothing; C changes rebuild the extension.
$(VENV)/.installed: $(VENV)/.created $(SOURCES)
	$(PY) -m pip install $(PIP_OPTS) --no-build-isolation -e '.[postgres,screen]'
	@touch $@

build: deps $(VENV)/.installed firmware

demo: build
	$(PY) -m fotabench demo --modules 8 --protocol both --faults

demo-packaging: build
	$(PY) bench/packaging_demo.py

test: test-deps build
	$(PY) -m pytest tests

$(ASAN_VENV)/.created: Makefile
	$(PYTHON) -m venv $(ASAN_VENV)
	$(ASAN_PY) -m pip install $(PIP_OPTS) --upgrade pip 'setuptools>=77' wheel $(TEST_DEPS)
	@touch $@

# A regular (not editable) install, so the sanitized extension never shadows the
# normal one that `make build` puts in pymodule/.
$(ASAN_VENV)/.installed: $(ASAN_VENV)/.created $(SOURCES)
	FOTABENCH_SANITIZE=1 $(ASAN_PY) -m pip install $(PIP_OPTS) --no-build-isolation --force-reinstall '.[postgres,screen]'
	@touch $@

# CPython itself is not built with ASan: preload the runtime, and leave leak
# checking to the C drivers (tests/test_native.py), where it is exact; under the
# interpreter LeakSanitizer would report CPython's own arena allocations.
# libcrypt is preloaded too: loaded later (by pyftpdlib's `import crypt`), its
# symbols meet ASan's crypt interceptor uninitialised and Python crashes.
ASAN_LIB = $(shell $(CC) -print-file-name=libasan.so)
CRYPT_LIB = $(shell $(CC) -print-file-name=libcrypt.so.1)
test-asan: test-deps $(ASAN_VENV)/.installed firmware-asan
	FOTABENCH_SANITIZE=1 LD_PRELOAD="$(ASAN_LIB) $(CRYPT_LIB)" \
	FOTABENCH_SIM=$(CURDIR)/firmware/build/asan/fotabench-sim \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:strict_string_checks=1 \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	$(ASAN_PY) -m pytest -p no:cacheprovider tests

# --- firmware (issue 3): the virtual module's board program; the agent's app images are
# built by the tests (make -C firmware sim VERSION=... OUT=...). ---------------------------
.PHONY: firmware firmware-asan
firmware: deps
	$(MAKE) -C firmware board WERROR=$(FOTABENCH_WERROR)
firmware-asan: deps
	$(MAKE) -C firmware board SANITIZE=1 WERROR=$(FOTABENCH_WERROR)
# --- end firmware -------------------------------------------------------------------------

bench: test-deps build
	$(PY) bench/perf/md5_throughput.py
	$(PY) bench/perf/servers.py
	$(PY) bench/perf/records.py
	$(PY) bench/perf/flash.py

FUZZ_SECONDS ?= 60
fuzz: test-deps
	$(MAKE) -C native fuzz
	@for f in native/build/fuzz/*; do \
	  echo "== $$f ($(FUZZ_SECONDS) s)"; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 || exit 1; done

# The README's two commands on a machine where nothing is installed (.ci/check-fresh):
# HEAD's commit, cloned into a minimal Debian root; CI=true is passed in when set.
check-fresh:
	bash .ci/check-fresh

# The wheel alone is enough for virtual modules: built, installed in a fresh venv outside
# the checkout, and a real virtual upgrade run from there (.ci/check-wheel).
check-wheel: build
	bash .ci/check-wheel

clean:
	rm -rf build native/build $(VENV) $(ASAN_VENV) pymodule/fotabench/*.so *.egg-info pymodule/*.egg-info
