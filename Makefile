# The series' pipeline. See README.md.
PYTHON := /usr/bin/python3
SHELL := /bin/bash

.PHONY: all setup tree patches kernel guest check demo clean help

all: check

help:
	@echo "make setup    install host dependencies (apt) and the pinned kernel source"
	@echo "make tree     materialize build/linux: base + series (git am), branch 'series'"
	@echo "make patches  regenerate patches/ and series from build/linux"
	@echo "make kernel   build the patched test kernel (build/obj/test)"
	@echo "make guest    build the static guest programs (build/guest/)"
	@echo "make demo     boot it, inflate and deflate the balloon, show the counters"
	@echo "make check    run every test; results in build/results/check.json"
	@echo "make clean    remove build output (keeps build/linux)"

setup:
	@bash ci/setup.sh

tree: setup
	@bash ci/tree.sh

patches:
	@bash ci/export.sh

kernel: tree
	@$(PYTHON) ci/kbuild.py test >build/kernel-image

guest:
	@$(MAKE) -s -C tools/guest

demo: kernel
	@$(PYTHON) tools/demo.py "$$(cat build/kernel-image)"

check: setup
	@$(PYTHON) ci/check.py $(TESTS)

clean:
	rm -rf build/check build/obj build/results build/tmp build/kernel-image
