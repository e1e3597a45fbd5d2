# The README's two commands: `make demo` and `make test`. Each creates the virtualenv if missing.
# The venv lives outside the clone, keyed by a hash of pyproject.toml, so CI and fresh clones on
# the same machine reuse it and only a dependency change reinstalls.
PYTHON ?= python3
HASH := $(shell sha256sum pyproject.toml | cut -c1-12)
VENV ?= $(HOME)/.cache/seco/venv-$(HASH)
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SHARED ?= $(abspath ../shared)
DEMO_OUT ?= data/demo
DEMO_N ?= 200
DEMO_SHARDS ?= data/demo-shards
DEMO_RUN ?= runs/demo
# a short CPU run: 64 px crops, batch 32, 40 steps (the paper's settings are the defaults of seco-train run)
DEMO_TRAIN ?= --set steps=40 --set data.size=64 --set data.batch_size=32 --set model.queue_size=256 --set data.workers=2 --set log_every=5

.PHONY: venv install browser demo test bench clean-demo

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

# (re)point the editable install at this clone: cheap, and right after a fresh clone
install: $(STAMP)
	@$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e . >/dev/null

# headless Chromium + its driver for the viewer's browser tests, node + npm for the geotiff.js test
# (it installs geotiff.js from npm with tests/js/package-lock.json) (Debian packages; root or sudo)
browser:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null || ! command -v npm >/dev/null; then \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  echo "installing chromium, chromium-driver, nodejs and npm (Debian) for the browser tests"; \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium chromium-driver nodejs npm >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium chromium-driver nodejs npm >/dev/null; }; \
	fi

demo: install
	$(BIN)/seco-data sample --recipe demo --n $(DEMO_N) --out $(DEMO_OUT) --workers 2
	$(BIN)/seco-data catalog info $(DEMO_OUT)
	$(BIN)/seco-data catalog html $(DEMO_OUT) --out $(DEMO_OUT)-site --overwrite
	$(BIN)/seco-data export $(DEMO_OUT) --format webdataset --out $(DEMO_SHARDS) --maxcount 25
	$(BIN)/seco-data verify $(DEMO_SHARDS)
	$(BIN)/seco-train run $(DEMO_SHARDS) --out $(DEMO_RUN) --resume $(DEMO_TRAIN)
	$(BIN)/seco-train export $(DEMO_RUN) --out $(DEMO_RUN)/backbone.pth --overwrite
	$(BIN)/seco-train eval eurosat --weights $(DEMO_RUN) --protocol knn --root $(SHARED)/data/eurosat-rgb --overwrite
	@echo
	@echo "demo done:"
	@echo "  catalog  $(DEMO_OUT)/catalog.json  (STAC: collection.json, items in $(DEMO_OUT)/0000/)"
	@echo "  index    $(DEMO_OUT)/items.parquet"
	@echo "  browse   $(DEMO_OUT)-site/index.html  (static viewer), or: $(BIN)/seco-data catalog serve $(DEMO_OUT)"
	@echo "  patches  $(DEMO_OUT)/0000/<location>/*.tif  (lossless GeoTIFF, UTM)"
	@echo "  shards   $(DEMO_SHARDS)/seco-*.tar  (WebDataset; manifest and wids index: $(DEMO_SHARDS)/shards.json)"
	@echo "  training $(DEMO_RUN)/  (checkpoint.pt, metrics.csv, loss.png, tb/; backbone: $(DEMO_RUN)/backbone.pth)"
	@echo "  eval     $(DEMO_RUN)/eval/eurosat-knn.json  (EuroSAT k-NN of the demo backbone; confusion matrices beside it)"

# browser-test screenshots land in tests/artifacts/ (kept, gitignored)
test: install browser
	SECO_SHARED=$(SHARED) $(BIN)/python -m pytest -q -n auto

bench: install
	$(BIN)/python bench/bench_sample.py
	$(BIN)/python bench/bench_export.py
	$(BIN)/python bench/bench_train.py

clean-demo:
	rm -rf $(DEMO_OUT) $(DEMO_OUT)-site $(DEMO_SHARDS) $(DEMO_RUN)
