"""The global auditor run as an operator would (`python -m auditor`) against a local mesh."""

from __future__ import annotations

from pathlib import Path

from chaos.run import audit_report
from launcher.mesh import LocalMesh


async def audit(mesh: LocalMesh, answered: list[str], tmp_path: Path) -> str:
    """Its report, asserted clean: every order id in ``answered`` stored once, every
    reservation, payment and shipment where the order's status says, stock balanced."""
    status, output = await audit_report(mesh, answered, tmp_path, settle=30)
    assert status == 0, output
    assert output.rstrip().endswith("clean"), output
    return output
