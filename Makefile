# Two commands on a fresh machine: `make perf` and `make test`. Each sets up .venv first: it reuses
# an installed torch (--system-site-packages) and otherwise installs torch==2.13.0; it installs
# Triton 3.6.0 (what the GPU image runs) where no Triton is installed, with NumPy < 2.4, which the
# 3.6 interpreter needs. `make test` also runs a smoke test on the newest Triton in .venv-latest.
# Without a GPU, tests/conftest.py runs the kernels through Triton's CPU interpreter.

PYTHON ?= python3
VENV ?= .venv
VENV_LATEST ?= .venv-latest
PY := $(VENV)/bin/python
PY_LATEST := $(VENV_LATEST)/bin/python
TORCH_PIN := torch==2.13.0
TRITON_PIN := triton==3.6.0
PYTEST_ARGS ?=

.PHONY: all venv test test-suite test-latest perf compile-report cost-report clean

all: test

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv --system-site-packages $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -c "import triton" 2>/dev/null || $(PY) -m pip install -q $(TRITON_PIN) "numpy<2.4"
	$(PY) -c "import sys, triton, numpy; v = lambda m: tuple(int(p) for p in m.__version__.split('.')[:2]); \
		sys.exit(v(triton) < (3, 7) and v(numpy) >= (2, 4))" || $(PY) -m pip install -q "numpy<2.4"
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	$(PY) -c "import pytest, xdist, hypothesis, pandas, matplotlib, tqdm" 2>/dev/null \
		|| $(PY) -m pip install -q "pytest>=8" "pytest-xdist>=3" "hypothesis>=6" "pandas>=2" "matplotlib>=3.7" "tqdm>=4.60"
	$(PY) -c "import onnx, onnxscript, onnxruntime" 2>/dev/null \
		|| $(PY) -m pip install -q "onnx>=1.16" "onnxscript>=0.2" "onnxruntime>=1.18"
	touch $@

venv: $(VENV)/.installed

$(VENV_LATEST)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv --system-site-packages $(VENV_LATEST)
	$(PY_LATEST) -c "import torch" 2>/dev/null || $(PY_LATEST) -m pip install -q $(TORCH_PIN)
	$(PY_LATEST) -m pip install -q --upgrade triton numpy "pytest>=8"
	$(PY_LATEST) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

test: test-suite test-latest

test-suite: $(VENV)/.installed
	$(PY) -m pytest -n 2 $(PYTEST_ARGS)

# On the newest Triton: the kernels against the reference (one layer, and a stack in one launch), and the compile report's specialisation
# against that Triton's own JIT binder.
test-latest: $(VENV_LATEST)/.installed
	$(PY_LATEST) -m pytest tests/test_smoke.py tests/test_stack.py tests/test_compile_report.py::test_specialisation_is_what_the_jit_builds_at_launch $(PYTEST_ARGS)

perf: $(VENV)/.installed
	$(PY) -m tritongru bench

compile-report: $(VENV)/.installed
	$(PY) -m tritongru compile-report --gpu h200 --out perf/results

cost-report: $(VENV)/.installed
	$(PY) -m tritongru cost-report --gpu h200 --kernelbench --out perf/results/model-h200

clean:
	rm -rf $(VENV) $(VENV_LATEST) .pytest_cache
