# osbuilder — `make image`, `make run`, `make test` (see README.md)
SHELL := /bin/bash
# the build settings (BOARD=, VERSION=, CONFIG=, ...) and BUILD_ARGS: generated from
# osbuilder/host/settings.py by `make settings`
include settings.mk
ACCEL ?= tcg
VENV := .venv
# diskimage-builder (rootfs backend dib, make bench) lives in a venv of its own
DIB_VENV := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/osbuilder/dib-venv
PY := $(VENV)/bin/python
OSB := $(VENV)/bin/osbuilder

# Debian packages the build, the tests and `make run` need on the host: rauc/openssl sign
# bundles; qemu-user-static/arch-test build foreign-arch roots; qemu-system-arm, u-boot-*,
# libubootenv-tool and qemu-efi-aarch64 boot arm64; debootstrap and sudo are for
# diskimage-builder (rootfs backend dib, make bench), seabios to boot its image; xorriso
# makes --format iso, ipxe-qemu is the PXE ROM of QEMU's NICs (PXE test).
HOST_PACKAGES := python3 python3-venv mmdebstrap squashfs-tools mtools dosfstools e2fsprogs \
	fdisk util-linux zstd qemu-system-x86 qemu-utils ovmf debian-archive-keyring \
	ca-certificates git rauc openssl qemu-system-arm u-boot-qemu u-boot-tools libubootenv-tool \
	qemu-user-static arch-test qemu-efi-aarch64 debootstrap sudo seabios xorriso ipxe-qemu

.PHONY: help deps venv dib image run test test-all unit lint bench bench-fleet clean settings show-config

help:
	@echo "make image   build BOARD=$(BOARD) (K3S_DIR=... when offline); prints the image path"
	@echo "make run     boot the image of BOARD in QEMU, console here (quit: Ctrl-A X)"
	@echo "make test    lint + unit + integration + representative QEMU boots"
	@echo "make test-all  everything, including the slow QEMU and board legs"
	@echo "make bench   build and boot figures, osbuilder side by side with diskimage-builder"
	@echo "make bench-fleet  fleet upgrade figures: controller/watcher RSS, API requests, rollout time"
	@echo "make dib     install diskimage-builder (rootfs backend dib) into $(DIB_VENV)"

deps:
	@missing=$$(for p in $(HOST_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
		| grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" != 0 ]; then echo "missing host packages: $$missing (run: sudo make deps)"; exit 1; fi; \
		echo "installing host packages: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(VENV)/.stamp: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.stamp

$(DIB_VENV)/.stamp: requirements-dib.txt
	python3 -m venv $(DIB_VENV)
	$(DIB_VENV)/bin/pip install -q -r requirements-dib.txt
	touch $@

dib: $(DIB_VENV)/.stamp

image: deps venv
	$(OSB) build $(BUILD_ARGS)

run: venv
	OSB_QEMU_ACCEL=$(ACCEL) $(OSB) run --board $(BOARD) \
		$$(ls -t $(OUT)/osbuilder-$(BOARD)-*.img | grep -v '\.run\.img$$' | head -1)

show-config: venv
	$(OSB) show-config $(BUILD_ARGS)

# regenerate settings.mk and the settings table of docs/building.md (both derived from the
# settings' one declaration; tests/unit/test_settings.py keeps them equal)
settings: venv
	$(PY) -m osbuilder.host.settings

lint: venv
	$(VENV)/bin/ruff check osbuilder tests bench
	$(VENV)/bin/mypy

unit: venv
	$(VENV)/bin/pytest -q tests/unit

test: deps venv lint
	$(VENV)/bin/pytest -m 'not slow' tests

test-all: deps venv dib lint
	OSB_FUZZ_EXAMPLES=20000 $(VENV)/bin/pytest tests

bench: deps venv dib
	$(PY) bench/bench.py

bench-fleet: venv
	$(PY) bench/fleet.py

clean:
	rm -rf $(OUT) $(VENV) .mypy_cache .pytest_cache .ruff_cache
