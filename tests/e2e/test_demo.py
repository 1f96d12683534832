"""``fotakit demo`` (what ``make demo`` runs), as a real process, to its summary.

The demo starts the server, 50 simulated devices on mixed links with injected faults,
uploads a signed 1.1.0 and runs a campaign through the REST API. The test reads what it
prints: every device is accounted for in the summary table (the rows add up to 50), the
table agrees with the firmware the devices report, the devices with a broken image are
the ones rolled back, and the dashboard URL and admin token are on screen.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

FOTAKIT = str(Path(sys.executable).with_name("fotakit"))
DEVICES = 50


async def test_demo_runs_to_a_summary_that_adds_up(tmp_path: Path) -> None:
    env = {**os.environ, "COLUMNS": "160", "TERM": "dumb"}
    proc = await asyncio.create_subprocess_exec(
        FOTAKIT,
        "demo",
        "--data-dir", str(tmp_path / "demo"),
        "--http-port", "0",
        "--exit",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 240)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = out.decode()
    assert proc.returncode == 0, text[-6000:] + err.decode()[-4000:]
    registered = re.search(r"(\d+)/(\d+) devices registered", text)
    assert registered and registered.groups() == (str(DEVICES), str(DEVICES))
    faulty = int(re.search(r"(\d+) carry a fault", text).group(1))  # type: ignore[union-attr]
    total = re.search(r"│ total\s*│\s*(\d+)", text)
    assert total and int(total.group(1)) == DEVICES, text
    rows = dict(
        (label.strip(), int(n))
        for label, n in re.findall(r"│ ([a-z][^│]*?)\s*│\s*(\d+) │", text)
        if label.strip() != "total"
    )
    assert sum(rows.values()) == DEVICES, rows
    updated = rows.get("updated to 1.1.0", 0)
    rolled_back = rows.get("rolled back (new image failed its health check)", 0)
    assert updated + rolled_back + rows.get("timed out", 0) <= DEVICES
    assert updated >= DEVICES - faulty - 5, rows  # the healthy fleet (a few may time out)
    assert rolled_back == faulty, rows  # each broken image rolled back, no other
    assert "consistent" in text and "INCONSISTENT" not in text
    assert re.search(r"dashboard\s+http://127\.0\.0\.1:\d+/#token=fk_\S+", text)
    assert re.search(r"admin token\s+fk_\S+", text)
