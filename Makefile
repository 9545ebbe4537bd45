# edgeseal entry points. `make test` and `make run` set everything up themselves.
# Pinned tool versions live in pyproject.toml (Python) and package.json/package-lock.json (node).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STUBS := .stubs
# micropython-esp32-stubs goes into its own folder: in the gateway venv it would shadow CPython's `time`.
ESP32_STUBS_VERSION := 1.29.0.post1
STDLIB_STUBS_VERSION := 1.29.0.post2
NODE_BIN := node_modules/.bin
PORT ?= /dev/ttyUSB0
BOARD ?= boards/esp32-devkitc.json

.PHONY: help setup test lint typecheck mpy-check test-firmware-mp test-py vectors vectors-check \
        bench run deps-system hil flash deploy install-gateway clean

help:
	@echo "make run    - the gateway with five virtual boards, anvil, 3 witnesses, a replica; prints the URLs"
	@echo "make test   - set up and run every check: lint, types, mpy-cross, MicroPython VM, pytest"
	@echo "make bench  - benchmarks, reported as ratios against baselines measured in the same run"
	@echo "make vectors - regenerate tests/vectors and fail if they changed"
	@echo "make deps-system - apt packages for Debian / Raspberry Pi OS (run as root)"
	@echo "make flash PORT=/dev/ttyUSB0 IMAGE=micropython.bin BOARD=boards/X.json - write MicroPython (esptool)"
	@echo "make deploy PORT=/dev/ttyUSB0 BOARD=boards/X.json - deploy the firmware (.mpy) and the profile"
	@echo "make hil PORT=/dev/ttyUSB0 - board checks and numbers on an attached board (PORT=stand-in: the VM)"

$(BIN)/.stamp: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	touch $@

node_modules/.stamp: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(STUBS)/.stamp: $(BIN)/.stamp
	rm -rf $(STUBS)
	$(BIN)/pip install -q --disable-pip-version-check --no-deps --target $(STUBS) \
	    micropython-esp32-stubs==$(ESP32_STUBS_VERSION) \
	    micropython-stdlib-stubs==$(STDLIB_STUBS_VERSION)
	touch $@

setup: $(BIN)/.stamp node_modules/.stamp $(STUBS)/.stamp

lint: $(BIN)/.stamp
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(NODE_BIN)/pyright -p pyrightconfig.json
	$(NODE_BIN)/pyright -p firmware/pyrightconfig.json

mpy-check: $(BIN)/.stamp
	$(BIN)/python tools/mpy_check.py

test-firmware-mp: node_modules/.stamp
	node tools/mpvm.mjs

test-py: $(BIN)/.stamp
	$(BIN)/python -m pytest -n 2

vectors-check: $(BIN)/.stamp
	$(BIN)/python tools/gen_vectors.py --check

vectors: $(BIN)/.stamp
	$(BIN)/python tools/gen_vectors.py --write

test: setup lint typecheck mpy-check vectors-check test-firmware-mp test-py

bench: setup
	$(BIN)/python tools/bench.py

# The demo: the gateway with five virtual boards running the real firmware on a virtual radio,
# anchoring on a local anvil, cosigned by three witnesses, copied by a replica (docs/demo.md).
DATA_DIR ?= data
HOST ?= 127.0.0.1
HTTP_PORT ?= 8000

run: setup
	@echo "edgeseal: dashboard at http://$(HOST):$(HTTP_PORT)/ (Ctrl-C stops)"
	exec $(BIN)/python -m tools.sim.run --data-dir $(DATA_DIR) --host $(HOST) --port $(HTTP_PORT)

install-gateway:
	@[ "$$(id -u)" = 0 ] || { echo "make install-gateway must run as root (sudo make install-gateway)"; exit 1; }
	sh tools/install_gateway.sh

# docs/boards.md: EDGESEAL_HIL_RADIO=1 adds the radio measurements (gateway's bleak central).
hil: setup
	EDGESEAL_HIL_PROFILE=$(BOARD) $(BIN)/python -m pytest -m hil -s -p no:randomly --port $(PORT) tests/hil

flash: setup
	@[ -n "$(IMAGE)" ] || { echo "make flash needs IMAGE=<the MicroPython .bin you downloaded>"; exit 2; }
	$(BIN)/edgeseal board flash --port $(PORT) --image $(IMAGE) --profile $(BOARD)

deploy: setup
	$(BIN)/edgeseal board deploy --port $(PORT) --profile $(BOARD)

# System packages on Debian / Raspberry Pi OS: the toolchain, D-Bus + dbusmock (the BlueZ path's
# test), Chromium (the dashboard's browser test), Mosquitto (the MQTT bridge's test broker, started
# by the tests, never as a service). Node comes from Debian unless one is installed
# already (a NodeSource nodejs conflicts with Debian's npm).
SYSTEM_PACKAGES := python3 python3-venv python3-dev gcc make dbus python3-dbusmock chromium mosquitto \
    fonts-dejavu-core

deps-system:
	apt-get update
	apt-get install -y --no-install-recommends $(SYSTEM_PACKAGES)
	command -v node >/dev/null && command -v npm >/dev/null || \
	    apt-get install -y --no-install-recommends nodejs npm

clean:
	rm -rf $(VENV) $(STUBS) node_modules build *.egg-info
