# towerlab: `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
TL     := $(VENV)/bin/towerlab
STAMP  := $(VENV)/.installed
# Without a GPU, install the CPU build of torch (plain `torch` on Linux pulls a multi-GB CUDA build).
# Elsewhere: make TORCH_CPU="torch --index-url https://download.pytorch.org/whl/cpu"
TORCH_CPU ?= torch==2.13.0
# The real datasets beside this checkout, when present (CI has them); tests say so when absent.
TOWERLAB_DATA ?= $(shell [ -d ../shared/data ] && cd ../shared/data && pwd)
export TOWERLAB_DATA

.PHONY: demo test lint format bench clean exe exe-torch exe-test exe-torch-test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@if ! $(PY) -c "import torch" 2>/dev/null && ! command -v nvidia-smi >/dev/null 2>&1; then \
		echo "no GPU here: installing $(TORCH_CPU)"; $(PY) -m pip install -q $(TORCH_CPU); fi
	$(PY) -m pip install -q -e '.[test]'
	@# GuacaMol (benchmarks and objectives) without its declared rdkit-pypi, which would replace the current RDKit
	@# with a 2022 build; fcd is what its distribution suite imports. README: Molecules.
	$(PY) -m pip install -q --no-deps 'guacamol==0.5.5' 'fcd==1.2.2'
	touch $@

demo: $(STAMP)
	@run=runs/demo-$$(date +%Y%m%d-%H%M%S); set -e; \
	echo "== train digits on the CPU (scikit-learn's 1,797 real 8x8 scans, no download)"; \
	$(TL) train digits --gpus 0 --out $$run; \
	echo "== evaluate"; $(TL) eval $$run; \
	echo "== predict six held-out images"; \
	$(TL) data export digits $$run/samples --n 6 >/dev/null; \
	$(TL) predict $$run $$run/samples/*.png; \
	echo "== run directory: $$run"; \
	echo "   TensorBoard:   $(VENV)/bin/tensorboard --logdir $$run/tb"

test: $(STAMP) lint
	$(PY) -m pytest -q --durations=15 -n auto --maxprocesses 4 --dist loadgroup

# ruff (pinned in pyproject.toml's test extra): mistakes and drift (`check`), and the one layout (`format`)
lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench packaging
	$(VENV)/bin/ruff format --check src tests bench packaging

format: $(STAMP)
	$(VENV)/bin/ruff check --fix src tests bench packaging
	$(VENV)/bin/ruff format src tests bench packaging

bench: $(STAMP)
	$(PY) bench/throughput.py

clean:
	rm -rf $(VENV) $(EXE_VENV) runs .pytest_cache

# Stand-alone executables of the service; see README "Serving". Not part of `make test`: a build takes minutes.
# `make exe`: ONNX Runtime, no torch (grades models exported with `towerlab export RUN --format onnx`);
# `make exe-torch`: CPU torch inside (grades run directories too). `make exe-test` builds the first and checks
# that the built program grades rows; `make exe-torch-test` the second.
EXE       := dist/towerlab-serve
EXE_TORCH := dist/towerlab-serve-torch
PYI_COMMON := --noconfirm --clean --onefile --log-level WARN --hidden-import sqlalchemy.dialects.sqlite \
	--hidden-import sqlalchemy.dialects.postgresql --hidden-import psycopg --exclude-module tensorboard \
	--exclude-module matplotlib --exclude-module IPython --exclude-module lightning
# The ONNX program is built in a venv of its own holding only what the service imports (PyInstaller bundles whatever
# the build environment has: built from the test venv it carried pyarrow, scipy, pandas and grpc, 198 MiB).
EXE_VENV := .venv-exe
EXE_DEPS := sqlalchemy pydantic prometheus-client 'psycopg[binary]' pyyaml numpy pillow onnxruntime pyinstaller
$(EXE_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(EXE_VENV)
	$(EXE_VENV)/bin/python -m pip install -q --upgrade pip
	$(EXE_VENV)/bin/python -m pip install -q $(EXE_DEPS)
	$(EXE_VENV)/bin/python -m pip install -q --no-deps -e .
	touch $@

exe: $(EXE_VENV)/.installed
	$(EXE_VENV)/bin/pyinstaller $(PYI_COMMON) --name towerlab-serve --collect-submodules towerlab.serve \
		--exclude-module towerlab.serve.scorer --exclude-module torch --exclude-module torchvision \
		--exclude-module onnx --exclude-module sympy --exclude-module rdkit --exclude-module ray \
		packaging/serve_entry.py
	@ls -la $(EXE)

exe-torch: $(STAMP)
	$(PY) -m pip install -q pyinstaller
	$(VENV)/bin/pyinstaller $(PYI_COMMON) --name towerlab-serve-torch --collect-submodules towerlab \
		--exclude-module torch.utils.tensorboard packaging/serve_entry.py
	@ls -la $(EXE_TORCH)

exe-test: exe
	TOWERLAB_EXE=$(abspath $(EXE)) $(PY) -m pytest -q tests/serve/test_exe.py

exe-torch-test: exe-torch
	TOWERLAB_EXE_TORCH=$(abspath $(EXE_TORCH)) $(PY) -m pytest -q tests/serve/test_exe.py
