# make demo: the workflow on the embedded demo dataset; make test: the test suite.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CORES ?= all
# torch and torchvision first, in their own pip call, so nothing later upgrades them.
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: venv demo test bench lint format clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/snakemake --cores $(CORES)

test: $(STAMP)
	$(VENV)/bin/pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) benchmarks/bench_cache.py
	$(PY) benchmarks/bench_dag.py
	$(PY) benchmarks/bench_clip.py
	$(PY) benchmarks/bench_mv.py
	$(PY) benchmarks/bench_heads.py

lint: $(STAMP)
	$(VENV)/bin/snakemake --lint
	$(VENV)/bin/snakefmt --check Snakefile rules

format: $(STAMP)
	$(VENV)/bin/snakefmt Snakefile rules

clean:
	rm -rf results .snakemake
