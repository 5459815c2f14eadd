# recon3d: `make demo` and `make test` work on a fresh machine (they run `make setup` first).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_INPUT ?= assets/scenes/object_8/images
DEMO_OUT ?= out/demo

.PHONY: setup setup-test demo test test-fast test-slow bench ui clean train-gpu

setup: $(VENV)/.setup-done
setup-test: $(VENV)/.test-setup-done

$(VENV)/.setup-done: pyproject.toml Makefile
	@# open3d (meshes) needs libusb at import time; install it from Debian when missing.
	@if ! ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -qq && apt-get install -y -qq libusb-1.0-0 >/dev/null; \
		else echo "note: install the Debian package libusb-1.0-0 (needed by open3d)"; fi; \
	fi
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@# torch first, and only when missing: the CPU build 2.13.0, never a CUDA build pulled in by a range.
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.test-setup-done: $(VENV)/.setup-done
	$(PY) -m pip install -q -e ".[test]"
	@# The browser test drives Debian's chromium through Playwright; install it when missing.
	@if ! command -v chromium >/dev/null; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
		else echo "note: install the Debian package chromium for the browser test (it is skipped without it)"; fi; \
	fi
	touch $@

demo: setup
	$(VENV)/bin/recon3d reconstruct $(DEMO_INPUT) -o $(DEMO_OUT) --export npz,glb,ply,mesh

# Everything but the CUDA tests (which skip without a GPU anyway): what CI runs.
test: setup-test
	$(PY) -m pytest -q

# The developer loop: skips the tests marked slow (subprocesses, browser, Ray, packaging).
test-fast: setup-test
	$(PY) -m pytest -q -m "not slow and not gpu"

test-slow: setup-test
	$(PY) -m pytest -q -m slow

ui: setup
	$(VENV)/bin/recon3d ui

bench: setup
	$(PY) benchmarks/vggt_cpu.py

# On a lent GPU (a CUDA build of torch installed): continue the embedded model's network
# from the shipped weights for TRAIN_MINUTES on a longer schedule (stage one, 12 scene
# renderers), then train its descriptor head on the result for MATCH_MINUTES (stage two),
# and copy the new weights (config.json, model.safetensors: 26 MB) and logs to OUT.
TRAIN_MINUTES ?= 7
MATCH_MINUTES ?= 2
TRAIN_STEPS ?= 20000
SHIPPED_STEP ?= 500
OUT ?= out/gpu-train
train-gpu: setup
	$(VENV)/bin/recon3d train recon3d-tiny -o runs/gpu --device cuda --workers 12 --steps $(TRAIN_STEPS) \
		--minutes $(TRAIN_MINUTES) --init-from models/recon3d-tiny --start-step $(SHIPPED_STEP)
	$(VENV)/bin/recon3d train recon3d-tiny-matching -o runs/gpu-matching --device cuda \
		--minutes $(MATCH_MINUTES) --init-from runs/gpu/model
	mkdir -p $(OUT) && cp runs/gpu-matching/model/config.json runs/gpu-matching/model/model.safetensors $(OUT)/ \
		&& cp runs/gpu/log.jsonl $(OUT)/stage-one.jsonl && cp runs/gpu-matching/log.jsonl $(OUT)/stage-two.jsonl

clean:
	rm -rf $(VENV) out .pytest_cache
