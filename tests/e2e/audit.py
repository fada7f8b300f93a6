"""The global auditor run as an operator would (`python -m auditor`) against a local mesh."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from launcher.mesh import LocalMesh


async def audit(mesh: LocalMesh, answered: list[str], tmp_path: Path) -> str:
    """Its report, asserted clean: every order id in ``answered`` stored once, every
    reservation, payment and shipment where the order's status says, stock balanced."""
    acknowledged = tmp_path / "acknowledged.txt"
    acknowledged.write_text("".join(f"{order_id}\n" for order_id in answered))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "auditor", "--acknowledged", str(acknowledged), "--settle", "30",
        env={**os.environ, **mesh.audit_env()}, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    output = (await process.communicate())[0].decode()
    assert process.returncode == 0, output
    assert output.rstrip().endswith("clean"), output
    return output
