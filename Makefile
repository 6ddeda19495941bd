# The series' pipeline. See README.md.
PYTHON := /usr/bin/python3
SHELL := /bin/bash

.PHONY: all setup tree patches kernel guest check check-full demo bench bench-modes mbox mutants stress clean help

all: check

help:
	@echo "make setup    install host dependencies (apt) and the pinned kernel source"
	@echo "make tree     materialize build/linux: base + series (git am), branch 'series'"
	@echo "make patches  regenerate patches/ and series from build/linux"
	@echo "make kernel   build the patched test kernel (build/obj/test)"
	@echo "make guest    build the static guest programs (build/guest/)"
	@echo "make demo     one benchmark scenario on stock and patched, side-by-side table"
	@echo "make bench    every benchmark scenario; build/results/bench.{json,md}, maps/"
	@echo "make bench-modes  the series with pageblock_inflate 0, 1, 2 (random-512M, 3 runs each)"
	@echo "make check-full  make check plus 0-day style builds: clang W=1, i386 W=1, allmodconfig W=1 (time-boxed)"
	@echo "make mbox     the series as a b4 patch set with cover letter in build/results/ (BASE_TREE=upstream v6.12.117 checkout)"
	@echo "make check    run every test; results in build/results/check.json"
	@echo "make mutants  break guarded behaviours on purpose; each must fail its test"
	@echo "make stress   stress and fault suite on the patched debug kernel (DURATION=900 s; STOCK=1 also runs stock)"
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

demo: tree
	@$(PYTHON) tools/bench.py --scenarios random-512M

bench: tree
	@$(PYTHON) tools/bench.py $(if $(SCENARIOS),--scenarios $(SCENARIOS))

mbox: tree
	@$(PYTHON) tools/mbox.py $(if $(BASE_TREE),--base-tree $(BASE_TREE))

bench-modes: tree
	@$(PYTHON) tools/bench.py --modes --reps 3 --scenarios $(or $(SCENARIOS),random-512M)

check: setup
	@$(PYTHON) ci/check.py $(TESTS)

check-full: setup
	@$(PYTHON) ci/check.py --full $(TESTS)

mutants: tree
	@$(PYTHON) tools/mutants.py $(MUTANTS)

stress: tree
	@$(PYTHON) tools/stress.py --kernel patched $(if $(DURATION),--duration $(DURATION))
	$(if $(STOCK),@$(PYTHON) tools/stress.py --kernel stock $(if $(DURATION),--duration $(DURATION)))

clean:
	rm -rf build/check build/obj build/results build/tmp build/kernel-image
