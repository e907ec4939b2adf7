# make demo: the workflow on the embedded demo dataset; make test: the whole test suite (what CI
# runs); make test-fast: the edit-test loop; make lint: the gates CI runs first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CORES ?= all
PYTHON_CODE := moclip tests benchmarks workflow_scripts tools

.PHONY: venv lock demo test test-fast bench bench-scale gpu-check readme-numbers lint format clean

# The lock, requirements.txt: every package at an exact version, pip's resolution of
# pyproject.toml's ranges and this torch pair (the two import together; torch 2.13's
# torchvision fails to). `make lock` rewrites it and envs/moclip.yaml.
TORCH_PAIR := torch==2.14.1 torchvision==0.29.1
LOCK := requirements.txt

# Which torch a fresh .venv gets (set it on the make that creates the venv):
#   (empty)  the lock's, from PyPI: the CUDA build, which runs on a CPU too (6.3 GB in all);
#   cpu      PyTorch's CPU-only build of the same versions, without the CUDA packages (~4 GB less);
#   keep     the torch and torchvision already in $(VENV), yours, whatever their version.
TORCH_INDEX ?=
CPU_INDEX := https://download.pytorch.org/whl/cpu
NOT_CUDA := grep -vE '^(nvidia-|cuda-|triton==)'
ifeq ($(TORCH_INDEX),)
TORCH_STEP = $(PY) -m pip install -q $$(grep -E '^(torch|torchvision)==' $(LOCK))
REST_OF_LOCK = cat $(LOCK)
else ifeq ($(TORCH_INDEX),cpu)
TORCH_STEP = $(PY) -m pip install -q --index-url $(CPU_INDEX) $$(grep -E '^(torch|torchvision)==' $(LOCK))
REST_OF_LOCK = $(NOT_CUDA) $(LOCK)
else ifeq ($(TORCH_INDEX),keep)
TORCH_STEP = $(PY) -c "import torch, torchvision" || { echo "TORCH_INDEX=keep: no torch and torchvision in $(VENV)"; exit 1; }
REST_OF_LOCK = $(NOT_CUDA) $(LOCK) | grep -vE '^(torch|torchvision)=='
else
$(error TORCH_INDEX=$(TORCH_INDEX): use cpu, keep, or leave it empty)
endif

# torch and torchvision first, in their own pip call, so that nothing installed after them
# replaces them; then the rest of the lock; then moclip itself, editable.
$(STAMP): $(LOCK) pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(TORCH_STEP)
	$(REST_OF_LOCK) > $(VENV)/lock.txt
	$(PY) -m pip install -q -r $(VENV)/lock.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

# After a change of pyproject.toml's ranges or TORCH_PAIR: the lock in place holds every other
# version; UPGRADE=1 resolves afresh and takes newer releases. The next make installs it.
lock:
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) tools/lock.py --pair $(TORCH_PAIR) $(if $(UPGRADE),--upgrade)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/snakemake --cores $(CORES)

# Tests run in TEST_JOBS pytest-xdist workers (0: in this process), as tests/conftest.py
# groups them (a file a worker but for the longest, the longest first); the session's tiny
# demo run is built once for all.
TEST_JOBS ?= 2
XDIST = $(if $(filter 0,$(TEST_JOBS)),,-n $(TEST_JOBS) --dist loadfile --no-loadscope-reorder)

test: $(STAMP)
	$(VENV)/bin/pytest -q $(XDIST) --durations=15 $(PYTEST_ARGS)

# Every test that does not run the workflow, then one tiny demo run and the checks that read
# it (marked `fast`).
test-fast: $(STAMP)
	$(VENV)/bin/pytest -q $(XDIST) -m "not workflow or fast" $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) benchmarks/bench_cache.py
	$(PY) benchmarks/bench_dag.py
	$(PY) benchmarks/bench_clip.py
	$(PY) benchmarks/bench_frames.py
	$(PY) benchmarks/bench_mv.py
	$(PY) benchmarks/bench_accumulate.py
	$(PY) benchmarks/bench_heads.py
	$(PY) benchmarks/bench_dense.py

# The whole workflow on UCF101-shaped synthetic sets of 1,332 and 13,320 videos (25 min on
# 2 cores, 26 GB of temporary disk, measured): a table a stage, the growth with size, a projection.
bench-scale: $(STAMP)
	$(PY) benchmarks/bench_scale.py --sizes 1332 13320 --json benchmarks/scale.json --plot benchmarks/scale.png

# The prepared check of the GPU path (benchmarks/gpu_check.py): on a machine with CUDA the
# full-size run (a UCF101-sized synthetic set made on the cores, every GPU stage on it
# against its bare ceiling, the three-split projection of both presets): each part
# time-boxed, parts that would start past 480 s skipped, about 8 minutes in all. `--plan
# demo` runs the demo on the card against the CPU instead (about 5 minutes on an H200).
# Without CUDA the same code as a CPU rehearsal at tiny sizes. Writes gpu-check.json; the
# outer timeout only guards a hung process.
gpu-check: $(STAMP)
	timeout 900 $(PY) benchmarks/gpu_check.py --out gpu-check.json $(GPU_CHECK_ARGS)

# README.md's demo table, rewritten from a fresh default demo run (the test that checks it).
readme-numbers: $(STAMP)
	MOCLIP_UPDATE_README=1 $(VENV)/bin/pytest -q tests/test_readme.py

lint: $(STAMP)
	$(VENV)/bin/snakemake --lint
	$(VENV)/bin/snakefmt --check Snakefile rules
	$(VENV)/bin/ruff format --check $(PYTHON_CODE)
	$(VENV)/bin/ruff check $(PYTHON_CODE)

format: $(STAMP)
	$(VENV)/bin/snakefmt Snakefile rules
	$(VENV)/bin/ruff format $(PYTHON_CODE)
	$(VENV)/bin/ruff check --fix $(PYTHON_CODE)

clean:
	rm -rf results .snakemake
