# Generated from osbuilder/host/settings.py by `make settings`: do not edit.
# Each variable is a setting of `osbuilder build` (docs/building.md: Build settings).
BOARD ?= qemu-amd64
OUT ?= out
VERSION ?=
FORMAT ?=
CONFIG ?=
K3S_VERSION ?=
K3S_CHANNEL ?=
K3S_DIR ?=
KEYS ?=
ENCRYPTION ?=
BUILD_ARGS := $(if $(BOARD),--board $(BOARD)) \
	$(if $(OUT),--out $(OUT)) \
	$(if $(VERSION),--version $(VERSION)) \
	$(if $(FORMAT),--format $(FORMAT)) \
	$(if $(CONFIG),--config $(CONFIG)) \
	$(if $(K3S_VERSION),--k3s-version $(K3S_VERSION)) \
	$(if $(K3S_CHANNEL),--k3s-channel $(K3S_CHANNEL)) \
	$(if $(K3S_DIR),--k3s-dir $(K3S_DIR)) \
	$(if $(KEYS),--keys $(KEYS)) \
	$(if $(ENCRYPTION),--encryption $(ENCRYPTION))
