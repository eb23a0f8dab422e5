"""Fixtures of the must_ds package's tests: the must-ds command, the Rust
batch dumper (examples/dump_batches.rs) and demo datasets, all real."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _torch_lib():
    try:
        import torch
    except ImportError:
        return None
    return os.path.join(os.path.dirname(torch.__file__), "lib")


def tool_env():
    """The environment for the repository's binaries (built with the `tch`
    feature, they need torch's lib folder)."""
    env = dict(os.environ)
    lib = _torch_lib()
    if lib:
        env["LD_LIBRARY_PATH"] = lib + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    return env


def _binary(var, rel, build):
    path = Path(os.environ.get(var, REPO / rel))
    if not path.exists():
        if shutil.which("cargo") is None:
            pytest.fail(f"{path} is missing and cargo is not there to build it (or set {var})")
        subprocess.run(["cargo", "build", "--release", "--quiet", *build], cwd=REPO, check=True)
    return str(path)


@pytest.fixture(scope="session")
def must_bin():
    """The must-ds command (MUST_DS_BIN, else target/release/must-ds)."""
    return _binary("MUST_DS_BIN", "target/release/must-ds", [])


@pytest.fixture(scope="session")
def dump_bin():
    """The Rust loader's batch dumper (MUST_DS_DUMP, else target/release/examples/dump_batches)."""
    return _binary("MUST_DS_DUMP", "target/release/examples/dump_batches", ["--example", "dump_batches"])


def run(cmd, **kw):
    r = subprocess.run([str(c) for c in cmd], env=tool_env(), capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise AssertionError(f"{cmd} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r.stdout


@pytest.fixture(scope="session")
def demo(tmp_path_factory, must_bin):
    """A 96-image demo dataset with its four tasks (read only)."""
    root = tmp_path_factory.mktemp("demo") / "ds"
    run([must_bin, "demo", root, "--images", "96"])
    return str(root)


@pytest.fixture(scope="session")
def demo_tasks(demo):
    import must_ds

    return sorted(must_ds.Dataset(demo).tasks)


def pytest_report_header(config):
    import must_ds

    return f"must_ds {must_ds.__version__} from {os.path.dirname(must_ds.__file__)}; python {sys.version.split()[0]}"
