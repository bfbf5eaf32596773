# Quick start: `make demo` (backup + point-in-time restore of a sample disk), `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
AGENT := $(VENV)/bin/agent
APT_PACKAGES := gdisk fdisk dosfstools mtools e2fsprogs xfsprogs btrfs-progs ntfs-3g exfatprogs exfat-fuse fuse3 openssh-server samba qemu-utils chromium groff-base
DEMO := demo

.PHONY: demo test system-deps venv clean

# Install the disk and server tools the demo and tests use (apt, when run as root and missing).
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else echo "please install:$$missing (sudo apt-get install$$missing)"; exit 1; fi; \
	fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,docs,s3,gcs,sftp,smb,gdrive,dropbox,onedrive,apprise]'
	touch $@

venv: $(VENV)/.installed

# Build a GPT disk (FAT + ext4), back it up, change files inside, back up again,
# restore both snapshots (--at and latest) and compare byte for byte.
demo: system-deps venv
	@set -euo pipefail; rm -rf $(DEMO); mkdir -p $(DEMO); \
	export AGENT_REPO=$$PWD/$(DEMO)/repo AGENT_PASSPHRASE_FILE=$$PWD/$(DEMO)/passphrase AGENT_CACHE_DIR=$$PWD/$(DEMO)/cache; \
	umask 077; head -c 24 /dev/urandom | base64 > $(DEMO)/passphrase; \
	$(PY) -m tests.diskimage build $(DEMO)/disk.img --marker "demo marker: payroll 2024"; \
	$(AGENT) init; \
	$(AGENT) backup $(DEMO)/disk.img --tag demo --time "$$(date -d '1 day ago' -Iseconds)"; \
	cp --sparse=always $(DEMO)/disk.img $(DEMO)/day0.img; \
	$(PY) -m tests.diskimage change $(DEMO)/disk.img; \
	$(AGENT) backup $(DEMO)/disk.img --tag demo; \
	$(AGENT) snapshots; \
	$(AGENT) restore --at yesterday --to $(DEMO)/restored-day0.img; \
	$(AGENT) restore latest --to $(DEMO)/restored-day1.img; \
	cmp $(DEMO)/day0.img $(DEMO)/restored-day0.img; \
	cmp $(DEMO)/disk.img $(DEMO)/restored-day1.img; \
	$(AGENT) check --read-data; \
	echo "demo OK: both snapshots restored byte for byte (files in $(DEMO)/)"

test: system-deps venv
	@# The docs must build with --strict. Not with -q: it hides warnings from --strict too (exit 0).
	@d=$$(mktemp -d) && trap 'rm -rf "$$d"' EXIT && NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict \
	  -d "$$d/site" >"$$d/log" 2>&1 || { cat "$$d/log"; exit 1; }
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check agent backends crypto tests bench
	$(VENV)/bin/mypy
	$(PY) -m pytest -q

.PHONY: docs cli-reference json-schemas man

# The documentation site (mkdocs + material) into site/; --strict fails on broken links and missing pages.
docs: venv
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict -d site

# Regenerate the CLI reference and the man page from the typer app (tests/docs/test_cli_reference.py and
# tests/docs/test_manpage.py check both are current; `man -l docs/agent.1` reads the page).
cli-reference: venv
	$(PY) -m agent.cli.reference -o docs/cli-reference.md
	$(PY) -m agent.cli.manpage -o docs/agent.1

man: cli-reference

# docs/schemas/*.json, the schema of each command's --json lines, from agent/cli/json_schemas.py
json-schemas: venv
	$(PY) -m agent.cli.json_schemas

clean:
	rm -rf $(DEMO) .pytest_cache

# Distributions: sdist + wheel in dist/ (checked by twine), and the single-file executable for rescue media
# in build/single-file/agent (PyInstaller, recipe in .dist/agent.spec; docs/install.md#single-file-executable).
# The executable is kept out of dist/ so that `twine check dist/*` sees only what goes to the package index.
SINGLE_FILE := build/single-file/agent
# dist-check: a Debian minbase chroot (debootstrap), pipx for the install test, objdump for PyInstaller
DIST_APT_PACKAGES := debootstrap pipx binutils

.PHONY: dist dist-check dist-deps

dist: venv
	$(PY) -m pip install -q -e '.[dist]'
	rm -rf dist $(dir $(SINGLE_FILE)) build/pyinstaller
	$(PY) -m build --outdir dist .
	$(VENV)/bin/twine check --strict dist/*
	$(VENV)/bin/pyinstaller --noconfirm --log-level WARN --distpath $(dir $(SINGLE_FILE)) \
	  --workpath build/pyinstaller .dist/agent.spec
	@ls -l dist/ $(SINGLE_FILE)

dist-deps:
	@missing=""; for p in $(DIST_APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else echo "please install:$$missing (sudo apt-get install$$missing)"; exit 1; fi; \
	fi

# The distribution tests (tests/distribution, marker `dist`, deselected by `make test`): the wheel installed with pipx,
# the missing-extra hint of a minimal install, and the single-file executable restoring inside a Debian
# minbase chroot without Python, from local, S3 (moto), GCS, SFTP and SMB repositories. Needs root
# (chroot); the chroot is cached in $(DIST_CACHE) (delete it to start clean).
DIST_CACHE ?= $(HOME)/.cache/agent-dist
dist-check: system-deps dist-deps dist
	AGENT_DIST_CACHE=$(DIST_CACHE) AGENT_SINGLE_FILE=$(SINGLE_FILE) $(PY) -m pytest -m dist -n 0 -q -rP tests/distribution

# Benchmark: agent vs restic 0.18 and 0.14 vs borg on four nightly 4 GiB disk images (docs/benchmarks.md).
# Needs root (apt, loop devices for the images, page-cache drops). Override any of these:
BENCH_IMAGES_SCRIPT ?= ../shared/bench/make-images.sh
BENCH_DATA ?= /tmp/bench-data
BENCH_ROUNDS ?= 3
BENCH_WORK ?= /tmp/bench-work
BENCH_TOOLS ?= /tmp/bench-tools

.PHONY: bench bench-scale

bench: venv
	$(PY) -m pip install -q -e '.[bench]'
	@missing=""; command -v restic >/dev/null || missing="$$missing restic"; \
	command -v borg >/dev/null || missing="$$missing borgbackup"; \
	[ -x /usr/bin/time ] || missing="$$missing time"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else echo "please install:$$missing (sudo apt-get install$$missing)"; exit 1; fi; \
	fi
	bash $(BENCH_IMAGES_SCRIPT) $(BENCH_DATA)
	@# restic 0.18: Debian trixie's package, apt-get download under a private apt state (bench/fetch.py)
	$(PY) -m bench.fetch --cache $(BENCH_TOOLS)
	$(PY) -m bench.run --data $(BENCH_DATA) --work $(BENCH_WORK) --rounds $(BENCH_ROUNDS) --tools-cache $(BENCH_TOOLS)

# 64 GiB sparse image backup + memory per chunk of a 1,000,000-chunk index (bench/results/scale.json).
bench-scale: venv
	$(PY) -m bench.scale --work $(BENCH_WORK)/scale
