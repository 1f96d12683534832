# fotakit — the two commands: `make demo` and `make test`.
# Needs only Python >= 3.11, make and the usual Debian tools. Node.js/npm and Debian's
# libcoap3-bin are installed for the interop tests when possible (Debian packages only as
# root); tests whose peer is missing are skipped and say why.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PEERS  := tests/interop/peers
PEERS_STAMP := $(PEERS)/node_modules/.installed-stamp
# An independent COSE implementation (cwt) for cross-checking our signatures. cwt pins
# cbor2 < 6 while fotakit uses cbor2 6, so it lives in a venv of its own.
COSE_PEER := tests/packages/cose_peer
COSE_VENV := .venv-cose
COSE_STAMP := $(COSE_VENV)/.installed-stamp

.PHONY: test demo lint typecheck unit peers libcoap chromium bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "fotakit needs Python >= 3.11"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# Third-party LwM2M/CoAP peers for tests/interop. Best effort: a missing peer makes its
# tests skip with the reason, it never fails the build here.
peers: $(PEERS_STAMP) libcoap chromium $(COSE_STAMP)

$(COSE_STAMP): $(COSE_PEER)/requirements.txt
	test -x $(COSE_VENV)/bin/python || $(PYTHON) -m venv $(COSE_VENV)
	$(COSE_VENV)/bin/python -m pip install --quiet -r $(COSE_PEER)/requirements.txt
	touch $@

$(PEERS_STAMP): $(PEERS)/package.json $(wildcard $(PEERS)/package-lock.json)
	@if command -v npm >/dev/null 2>&1; then \
	  npm ci --prefix $(PEERS) --no-audit --no-fund --loglevel=error && touch $@; \
	else echo "npm not found: lwm2m-node-lib interop tests will be skipped"; fi

libcoap:
	@if command -v coap-client-notls >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  (apt-get install -y -qq libcoap3-bin >/dev/null 2>&1 || \
	   (apt-get update -qq && apt-get install -y -qq libcoap3-bin >/dev/null)) || \
	  echo "could not install libcoap3-bin: libcoap interop tests will be skipped"; \
	else echo "not root: libcoap3-bin not installed, libcoap interop tests will be skipped"; fi

# Debian's Chromium drives the dashboard's browser tests (Playwright with this binary; no
# browser download). Installed only as root; otherwise those tests skip and say why.
chromium:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  (apt-get install -y -qq chromium >/dev/null 2>&1 || \
	   (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)) || \
	  echo "could not install chromium: dashboard browser tests will be skipped"; \
	else echo "not root: chromium not installed, dashboard browser tests will be skipped"; fi

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q -ra

test: $(STAMP) peers lint typecheck
	$(BIN)/pytest -q -ra

demo: $(STAMP)
	$(BIN)/fotakit demo

# Benchmarks take minutes (B2 has a 100 ms RTT run of 1025 lockstep blocks); not in `test`.
bench: $(STAMP) peers
	$(BIN)/python bench/bench_lwm2m.py --runs 3 --write docs/benchmarks.md
	$(BIN)/python bench/bench_delivery.py --runs 3 --slow-runs 1 --write docs/benchmarks.md
	$(BIN)/python bench/bench_wire.py --write docs/benchmarks.md
	$(BIN)/python bench/bench_pull.py --runs 3 --outage-runs 1 --write docs/benchmarks.md
	$(BIN)/python bench/bench_campaign.py --agents 200 --concurrency 50 --write docs/benchmarks.md
	$(BIN)/python bench/bench_fleet.py --write docs/benchmarks.md

clean:
	rm -rf $(VENV) $(COSE_VENV) $(PEERS)/node_modules .pytest_cache .mypy_cache .ruff_cache
