#!/usr/bin/env bash
# Sets up .venv with everything microscope needs. `bash install.sh --test` adds the test tools:
# pytest, Playwright (its Python driver only) driving Debian's Chromium, axe-core (npm) for the
# accessibility test, torch-lucent for the cross-checks against Lucid's PyTorch port, and Ray
# (the `ray` extra) for the tests of --executor ray on a local cluster.
# Safe to re-run: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)

# torch first and pinned: an unpinned torch would pull a newer multi-GB CUDA build.
"${PIP[@]}" "torch==2.14.1" "torchvision==0.29.1"
"${PIP[@]}" -e .

if [ "${1:-}" = "--test" ]; then
    "${PIP[@]}" -e ".[test,ray]"
    # torch-lucent pins old dependencies; take the package alone plus the small ones it imports.
    "${PIP[@]}" --no-deps "torch-lucent==0.1.8"
    "${PIP[@]}" --no-deps "kornia==0.4.1" decorator
    # axe-core for the accessibility test, pinned by tests/browser/package-lock.json.
    if command -v npm >/dev/null 2>&1; then
        npm ci --prefix tests/browser --no-audit --no-fund --silent
    else
        echo "install.sh: npm is missing; install Node.js for the accessibility test (tests/browser)" >&2
    fi
    if ! command -v chromium >/dev/null 2>&1; then
        if [ "$(id -u)" = "0" ]; then
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
        else
            echo "install.sh: Chromium is missing; install Debian's chromium package for the browser tests" >&2
        fi
    fi
fi
echo "install.sh: ready (.venv)"
