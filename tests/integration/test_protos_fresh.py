"""The checked-in stubs under ordermesh/ are exactly what `make protos` generates."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_matches_the_protos(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts/gen_protos.py"), str(tmp_path)], check=True, capture_output=True
    )
    fresh = sorted(p.relative_to(tmp_path) for p in (tmp_path / "ordermesh").rglob("*") if p.is_file())
    checked_in = sorted(
        p.relative_to(ROOT) for p in (ROOT / "ordermesh").rglob("*") if p.is_file() and "__pycache__" not in p.parts
    )
    assert fresh == checked_in, "run 'make protos': the set of generated files differs"
    stale = [str(p) for p in fresh if not filecmp.cmp(tmp_path / p, ROOT / p, shallow=False)]
    assert not stale, f"run 'make protos': out of date with protos/: {stale}"
