# Two entry points: `make demo` (plan -> approve -> run -> gate -> promote on the embedded tiny model)
# and `make test`. Both build .venv on first use. torch is installed first and pinned: an unpinned
# torch (or a package that asks for a newer one) pulls a multi-GB CUDA build.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION := 2.13.0
STAMP := $(VENV)/.installed

.PHONY: demo test venv clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q -U pip
	$(BIN)/python -m pip install -q torch==$(TORCH_VERSION)
	$(BIN)/python -m pip install -q -e ".[train,data,eval,dev]" "torch==$(TORCH_VERSION)"
	# llm-analysis, the baseline benchmarks/published_throughput.py prints beside ours (and a test holds us better than).
	# Without its dependencies: its metadata pins transformers<5 and huggingface-hub<0.15, which would downgrade ours;
	# its code imports only fire. Not needed by anything else: where no index serves it, say so and go on.
	$(BIN)/python -m pip install -q --no-deps llm-analysis==0.2.2 fire==0.5.0 termcolor six \
	  || echo "llm-analysis not installed: benchmarks/published_throughput.py prints our estimate alone"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	rm -rf demo-out  # each `make demo` starts afresh (sftplan demo refuses a folder holding an earlier demo)
	$(BIN)/sftplan demo --out demo-out
	$(BIN)/sftplan demo --method lora --out demo-out/lora

# Two workers (CI has 2 cores; most tests are one process importing torch): each test file stays on one worker,
# so a file's module-scoped fixtures (tiny model, runs shared by its tests) are built once.
test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile --durations=15 tests

clean:
	rm -rf demo-out .pytest_cache
