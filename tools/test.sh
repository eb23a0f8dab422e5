#!/usr/bin/env bash
# Runs every test of must-ds on a fresh machine: installs the Python
# packages the tests use (pyarrow, DuckDB, moto's S3 server, PyTorch 2.11
# whose libtorch the `tch` feature links), then the Rust suite (unit,
# integration and doc tests, the tensor conversion included) in release
# mode, then installs the Python package (`pip install ./python`) and runs
# its tests (pytest, python/tests: on a local Ray and under torchrun too),
# then the example student trainer for
# 200 steps on a demo dataset, in Rust and in Python (each fails unless its losses fall by 40 % and a control run with labels
# permuted across samples ends clearly worse), and builds the benchmarks so that they
# keep compiling (`cargo bench --no-run`).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check -r tools/requirements.txt
python3 -m pip install --quiet --disable-pip-version-check --no-deps facenet-pytorch==2.6.0
export LIBTORCH_USE_PYTORCH=1
TORCH_LIB="$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# The tests that need Python (pyarrow, DuckDB, moto, PyTorch, PyYAML) skip
# themselves when it is missing; here, with every package just installed,
# a missing one fails them instead, so that CI never skips a test silently.
export MUST_DS_REQUIRE_PYTHON=1
cargo test --release --features tch "$@"
if [ "$#" -eq 0 ]; then
    # The Python package, installed as a user installs it (maturin builds it
    # in this workspace's target folder), then its tests against the
    # binaries the Rust suite just built (must-ds, examples/dump_batches).
    python3 -m pip install --quiet --disable-pip-version-check ./python
    python3 -m pytest -q python/tests
    demo="$(mktemp -d)/demo"
    cargo run --release --quiet --features tch -- demo "$demo" > /dev/null
    cargo run --release --quiet --features tch --example train_student -- "$demo" 200
    # Its PyTorch twin over the Python package, with the same criterion.
    python3 examples/train_student.py "$demo" 200
    rm -rf "$(dirname "$demo")"
    cargo bench --features tch --bench '*' --no-run
fi
