#!/usr/bin/env bash
# Runs every test of must-ds on a fresh machine: installs the Python
# packages the interop tests use (pyarrow, DuckDB), then the Rust suite
# (unit, integration and doc tests) in release mode, which shares its build
# with `cargo run --release -- demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check -r tools/requirements.txt
cargo test --release "$@"
