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

# Debian packages of the host. `make image` installs only what a build needs; `make run`
# adds QEMU; `make test` (and `.ci/run`, which runs `make deps` then `make test`) adds the
# rest. Build: mmdebstrap/squashfs/mtools/e2fsprogs/fdisk/zstd/qemu-utils assemble the
# image; rauc/openssl sign bundles; qemu-user-static/arch-test build foreign-arch roots;
# u-boot-tools makes boot.scr; xorriso makes --format iso; git dates a checkout's builds;
# cryptsetup-bin's veritysetup makes the dm-verity root of U-Boot boards and signed builds.
BUILD_PACKAGES := python3 python3-venv mmdebstrap squashfs-tools mtools dosfstools e2fsprogs \
	fdisk util-linux zstd qemu-utils debian-archive-keyring ca-certificates git rauc openssl \
	u-boot-tools qemu-user-static arch-test xorriso cryptsetup-bin
# make run: QEMU and its firmware (UEFI for amd64 and arm64, U-Boot for the Pi boards), and
# swtpm, the TPM 2.0 a signed image's encrypted data is sealed to (osbuilder/host/qemu.py)
RUN_PACKAGES := qemu-system-x86 ovmf qemu-system-arm qemu-efi-aarch64 u-boot-qemu swtpm \
	swtpm-tools
# tests only: fw_printenv (U-Boot state checks), debootstrap and sudo for diskimage-builder
# (rootfs backend dib, make bench), seabios to boot DIB's image, ipxe-qemu as the PXE ROM of
# QEMU's NICs (PXE tests), sbverify (the node's check of an update's UKI, run on the host),
# ssh and ssh-keygen (an SSH session into a booted node)
TEST_PACKAGES := $(RUN_PACKAGES) libubootenv-tool debootstrap sudo seabios ipxe-qemu \
	sbsigntool openssh-client
# make install: the link to this checkout's osbuilder, in root's PATH and in sudo's
# secure_path (Debian's /etc/sudoers: /usr/local/sbin:/usr/local/bin:/usr/sbin:...)
PREFIX ?= /usr/local
BASH_COMPLETION_DIR ?= /usr/share/bash-completion/completions

.PHONY: help deps deps-run deps-test venv install uninstall dib image run test test-all unit lint \
	bench bench-boot bench-fleet clean settings show-config

help:
	@echo "make image   build BOARD=$(BOARD) (K3S_DIR=... when offline); prints the image path"
	@echo "make install link osbuilder into $(PREFIX)/bin, with bash completion (make image does)"
	@echo "make run     boot the image of BOARD in QEMU, console here (quit: Ctrl-A X)"
	@echo "make test    lint + unit + integration + representative QEMU boots"
	@echo "make test-all  everything, including the slow QEMU and board legs"
	@echo "make bench   build and boot figures, osbuilder side by side with diskimage-builder"
	@echo "make bench-boot   boot only: osbuilder vs stock Debian, first and second boot, SVGs"
	@echo "make bench-fleet  fleet rollout at 10/100/1,000 nodes: requests per node, controller RSS/CPU, planner time"
	@echo "make dib     install diskimage-builder (rootfs backend dib) into $(DIB_VENV)"

# install-packages LIST: the Debian packages of LIST this host lacks (as root)
define install-packages
	@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
		| grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" != 0 ]; then echo "missing host packages: $$missing (run: sudo make $@)"; exit 1; fi; \
		echo "installing host packages: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
endef

deps:
	$(call install-packages,$(BUILD_PACKAGES))

deps-run:
	$(call install-packages,$(RUN_PACKAGES))

deps-test: deps
	$(call install-packages,$(TEST_PACKAGES))

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

# osbuilder on PATH as this checkout's venv (an editable install: edits apply at once);
# `osbuilder` and `sudo osbuilder` then work from anywhere. pip users: `pip install .`
install: venv
	@if [ ! -w "$(PREFIX)/bin" ]; then echo "$(PREFIX)/bin is not writable: sudo make install, or make install PREFIX=~/.local"; exit 1; fi
	ln -sfn $(CURDIR)/$(OSB) $(PREFIX)/bin/osbuilder
	@if [ -d "$(BASH_COMPLETION_DIR)" ] && [ -w "$(BASH_COMPLETION_DIR)" ]; then \
		$(VENV)/bin/register-python-argcomplete osbuilder > $(BASH_COMPLETION_DIR)/osbuilder; \
		echo "bash completion: $(BASH_COMPLETION_DIR)/osbuilder (new shells)"; fi
	@echo "osbuilder -> $(CURDIR)/$(OSB) in $(PREFIX)/bin"

uninstall:
	@if [ "$$(readlink $(PREFIX)/bin/osbuilder)" = "$(CURDIR)/$(OSB)" ]; then \
		rm -f $(PREFIX)/bin/osbuilder $(BASH_COMPLETION_DIR)/osbuilder; echo "removed"; fi

image: deps venv install
	$(OSB) build $(BUILD_ARGS)

run: deps-run venv
	OSB_QEMU_ACCEL=$(ACCEL) $(OSB) run \
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

# two test files at a time (TCG runs a guest on one core): a file's tests share a worker,
# so a module's fixtures (builds, releases) are made once; TEST_JOBS=0 runs them in turn
TEST_JOBS ?= 2
test: deps-test venv lint
	$(VENV)/bin/pytest -m 'not slow' -n $(TEST_JOBS) --dist loadfile --no-loadscope-reorder \
		--durations=20 tests

test-all: deps-test venv dib lint
	OSB_FUZZ_EXAMPLES=20000 $(VENV)/bin/pytest -n $(TEST_JOBS) --dist loadfile \
		--no-loadscope-reorder --durations=30 tests

bench: deps-test venv dib
	$(PY) bench/bench.py

# the boot half of `make bench`: osbuilder against stock Debian booted the same way;
# BENCH_BOOT_BOARDS=qemu-amd64,rpi-arm64 for the Pi-like U-Boot case too
bench-boot: deps-test venv
	$(PY) bench/bench_boot.py

# the simulated fleet at 10, 100 and 1,000 nodes (minutes): a table, and JSON + SVG under
# bench/results/; SIZES=10,100 for a quicker look
SIZES ?= 10,100,1000
bench-fleet: venv
	$(PY) bench/fleet.py --sizes $(SIZES)

clean:
	rm -rf $(OUT) $(VENV) .mypy_cache .pytest_cache .ruff_cache
