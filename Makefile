# aoeprov: `make demo` and `make test` set up a fresh Debian 12 machine (as root) and run.
# Setup steps are idempotent: a second run only checks that everything is there.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CACHE ?= $(CURDIR)/.cache

# Every Debian package any test tier needs.
APT_PACKAGES := vblade aoetools qemu-system-x86 busybox-static cpio kmod lvm2 udev \
	xfsprogs e2fsprogs fdisk util-linux iproute2 systemd python3-venv ansible-core


.PHONY: all setup apt venv bytecode kernel test test-unit test-tools test-net test-storage test-vm demo lint bench docs clean wheelhouse

all: test

setup: apt venv bytecode

apt:
	@missing=$$(for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		[ "$$(id -u)" = 0 ] || { echo "make setup must run as root to install:" $$missing; exit 1; }; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

# Byte-compile once: the environment may set PYTHONDONTWRITEBYTECODE, and every `aoeprov`
# process would otherwise recompile the package (tens of ms per command).
bytecode: venv
	$(BIN)/python -m compileall -q aoeprov

# Every test, as two streams of pytest runs side by side (the vm tier leaves a core idle
# a third of the time): see tests/run_suite.sh. --durations: the slowest tests of each run
# in every CI log (the suite must stay well under 30 minutes).
test: setup kernel
	tests/run_suite.sh $(BIN)/pytest -q --ignore=tests/bench --durations=15

# Pure unit tests: no program besides python and coreutils, no root.
test-unit: setup
	$(BIN)/pytest -q tests -m 'not tools and not net and not storage and not vm' --ignore=tests/bench

# Unit tests that run real programs (sfdisk, mkfs, cpio, systemd-analyze, git, ansible-playbook...).
test-tools: setup
	$(BIN)/pytest -q tests -m tools --ignore=tests/bench

test-net: setup
	$(BIN)/pytest -q tests -m net --ignore=tests/bench

test-storage: setup
	$(BIN)/pytest -q tests -m storage --ignore=tests/bench

test-vm: setup kernel
	$(BIN)/pytest -q tests -m vm --ignore=tests/bench

# The lab's guest kernel: Debian's stock generic kernel package, downloaded once into $(CACHE)/lab.
kernel: setup
	$(BIN)/python -m aoeprov.lab.kernel --cache $(CACHE)

# The tutorial on two real-kernel VMs (aoeprov lab), the LV scaled from 20G to 2G for the lab.
# Ends with the initiator's `df -h /storage`; KEEP_LAB=1 leaves the VMs running
# (`aoeprov lab exec server1 -- CMD`, `aoeprov lab down`).
DEMO_LAB := $(BIN)/python -m aoeprov lab --state-dir $(CACHE)/lab/demo
demo: setup kernel
	$(DEMO_LAB) down
	$(DEMO_LAB) up examples/tutorial.yaml --size-override storage1=2G
	$(DEMO_LAB) exec server1 -- df -h /storage > $(CACHE)/lab/demo/df.txt; rc=$$?; \
	[ -n "$(KEEP_LAB)" ] || $(DEMO_LAB) down; cat $(CACHE)/lab/demo/df.txt; exit $$rc

lint: setup
	$(BIN)/ruff check aoeprov tests
	$(BIN)/mypy

bench: setup
	$(BIN)/python -m tests.bench

docs: venv
	$(BIN)/python -m aoeprov.spec.reference > docs/spec-reference.md

clean:
	rm -rf $(VENV) $(CACHE) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
