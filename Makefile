# Two commands do all the set-up on a fresh machine with Python 3.11 and pip:
#   make demo   -> virtual env, then the blobs demo (writes blobs.png)
#   make test   -> virtual env, then ruff and the whole test suite (slow and distributed tests too)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
# PyTorch: where there is no NVIDIA GPU, the CPU build 2.13.0 (a local file on the project's
# machines); elsewhere pass your own, e.g. TORCH_SPEC="torch" TORCH_PIP_ARGS="--index-url ...".
HAS_NVIDIA_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo yes)
TORCH_SPEC ?= $(if $(HAS_NVIDIA_GPU),torch>=2.3,torch==2.13.0)
TORCH_PIP_ARGS ?=
PYTEST_ARGS ?=

# The native kernel (backend='native'): compiled by the install (hatch_build.py), again
# before demo/test/bench whenever its source or build script changed, and by `make native`.
# No compiler: a warning, and torchmeans runs its torch path.
NATIVE_DIR := src/torchmeans/backends/native
NATIVE_INFO := $(NATIVE_DIR)/_build_info.json

.PHONY: demo test test-fast lint bench native clean

$(BIN)/.installed: pyproject.toml hatch_build.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[cli,test,bench]"
	touch $@

# (the test: a fresh install has just built it, as a side effect make does not see)
$(NATIVE_INFO): $(NATIVE_DIR)/lloyd_kernel.c $(NATIVE_DIR)/build.py | $(BIN)/.installed
	@test $@ -nt $(NATIVE_DIR)/lloyd_kernel.c -a $@ -nt $(NATIVE_DIR)/build.py || \
	$(BIN)/python $(NATIVE_DIR)/build.py || echo "torchmeans: no native kernel (see above): the torch path runs"

native: | $(BIN)/.installed  # always rebuilds (e.g. after installing a compiler)
	$(BIN)/python $(NATIVE_DIR)/build.py

demo: $(BIN)/.installed $(NATIVE_INFO)
	$(BIN)/torchmeans demo --out blobs.png

test: $(BIN)/.installed $(NATIVE_INFO) lint
	$(BIN)/python -m pytest -m "" $(PYTEST_ARGS)

test-fast: $(BIN)/.installed $(NATIVE_INFO)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests benchmarks

bench: $(BIN)/.installed $(NATIVE_INFO)
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(BIN)/python benchmarks/bench_lloyd.py --markdown

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis blobs.png
	rm -f $(NATIVE_DIR)/_lloyd_kernel_*.so $(NATIVE_INFO)
