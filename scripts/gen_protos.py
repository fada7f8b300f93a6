"""Generate the Python stubs under ordermesh/ from protos/ (``make protos``).

Usage: python scripts/gen_protos.py [OUT_DIR]

OUT_DIR defaults to the repository root. The freshness test generates into a
temporary directory and compares, so the checked-in stubs can never drift from
the protos.
"""

from __future__ import annotations

import os
import shutil
import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
PACKAGE = "ordermesh"


def generate(out_dir: Path) -> None:
    target = out_dir / PACKAGE
    if target.exists():
        shutil.rmtree(target)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    well_known = str(resources.files("grpc_tools") / "_proto")
    args = [
        "grpc_tools.protoc",
        f"-I{PROTOS}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *files,
    ]
    # The mypy plugins live beside this interpreter (the .venv), maybe not on PATH.
    bin_dir = str(Path(sys.executable).parent)
    os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    # Regular packages (not namespace packages) so mypy and setuptools see them.
    for directory in [target, *[d for d in target.rglob("*") if d.is_dir()]]:
        (directory / "__init__.py").write_text("")
    (target / "py.typed").write_text("")


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)
