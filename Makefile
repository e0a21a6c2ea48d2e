# The two commands the README starts with:
#   make run   installs everything, installs the starter models, starts aistack on 127.0.0.1:11500
#   make test  installs what the tests need and runs the whole suite
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
# The native llama.cpp build segfaults in the AMX kernel on some CPUs: build the portable one.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
TEST_STAMP := $(VENV)/.test-installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
# Test data (starter models) lives inside the repo's ignored .cache, shared by every test run.
export AISTACK_TEST_DATA_DIR ?= $(CURDIR)/.cache/test-data

.PHONY: run install install-test system-test-deps test lint starter clean test-windows windows-test-deps

run: install starter
	$(VENV)/bin/aistack serve

install: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is needed ($(PYTHON) not found)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e .
	$(PY) -c "import llama_cpp, faster_whisper, piper, av" 
	rm -f $(VENV)/.installed-*
	touch $@

install-test: $(TEST_STAMP)

$(TEST_STAMP): $(STAMP)
	$(PIP) install -q -e '.[test]'
	rm -f $(VENV)/.test-installed-*
	touch $@

starter: install
	$(VENV)/bin/aistack models install-starter

# Programs the end-to-end tests drive: a virtual X display with a system tray (tray test),
# Chromium with its driver (dashboard test), makensis (installer test). Installed only when missing.
SYSTEM_TEST_PROGRAMS := Xvfb trayer xdotool chromium chromedriver makensis import dbus-run-session
SYSTEM_TEST_PACKAGES := xvfb trayer xdotool x11-utils chromium chromium-driver nsis imagemagick libgomp1 \
                        python3-gi gir1.2-gtk-3.0 dbus

system-test-deps:
	@missing=$$(for p in $(SYSTEM_TEST_PROGRAMS); do command -v $$p >/dev/null || echo $$p; done; \
	  [ -d /usr/lib/python3/dist-packages/gi ] || echo python3-gi; \
	  ls /usr/lib/*/girepository-1.0/Gtk-3.0.typelib >/dev/null 2>&1 || echo gir1.2-gtk-3.0); \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages for the end-to-end tests (missing: $$missing)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $(SYSTEM_TEST_PACKAGES) >/dev/null; \
	fi

test: install-test system-test-deps
	AISTACK_DATA_DIR=$(AISTACK_TEST_DATA_DIR) $(VENV)/bin/aistack models install-starter
	$(VENV)/bin/ruff check app server models tests bench docs installer
	$(VENV)/bin/mypy
	$(VENV)/bin/python -m tests.suite

# The Windows lane (tests/windows/lane.py): the app, the frozen build and the installer under Wine with a
# Windows CPython; everything it downloads or builds is cached in ~/.cache/aistack-windows.
WINDOWS_TEST_PROGRAMS := wine wineboot x86_64-w64-mingw32-g++-posix makensis Xvfb cmake
# With recommends: Wine's fonts draw the tray menu's text.
WINDOWS_TEST_PACKAGES := wine wine64 mingw-w64 g++-mingw-w64-x86-64-posix nsis xvfb cmake

windows-test-deps:
	@missing=$$(for p in $(WINDOWS_TEST_PROGRAMS); do command -v $$p >/dev/null || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages for the Windows lane (missing: $$missing)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(WINDOWS_TEST_PACKAGES) >/dev/null; \
	fi

test-windows: install windows-test-deps
	AISTACK_DATA_DIR=$(AISTACK_TEST_DATA_DIR) $(VENV)/bin/aistack models install-starter
	$(PY) tests/windows/lane.py

lint: install-test
	$(VENV)/bin/ruff check app server models tests bench docs installer
	$(VENV)/bin/mypy

# The frozen app: dist/aistack/ and its size per folder. `make dist DIST_ARGS=--installer` adds the
# NSIS installer (needs makensis), DIST_ARGS=--tarball the Linux .tar.gz (see installer/build.py).
.PHONY: dist
dist: install
	$(PY) -c "import PyInstaller" 2>/dev/null || $(PIP) install -q -e '.[build]'
	$(PY) installer/build.py $(DIST_ARGS)

clean:
	rm -rf $(VENV) .cache
