"""What the benchmarks share: CPU pinning, the machine and revision line, the report file.

Each benchmark owns one ``## Bn`` section of docs/benchmarks.md and replaces only that
section when it writes, so B1 and B2 can be re-run independently.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any


def pin(cpu: int) -> None:
    """Run this process on one CPU (server and load on different cores)."""
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > cpu:
        os.sched_setaffinity(0, {cpu})


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def revision() -> str:
    """The short git revision, marked when src/ or bench/ has uncommitted changes."""
    sha = (
        subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        or "unknown"
    )
    dirty = subprocess.run(["git", "status", "--porcelain", "src", "bench"], capture_output=True)
    return sha + (" + uncommitted changes" if dirty.stdout.strip() else "")


def write_section(path: Path, head: str, section: str) -> None:
    """Replace the section starting with ``head`` (up to the next '## '), keep the rest."""
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    start = text.find(head)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(head))
        text = text[:start] + section + (text[end + 1 :] if end >= 0 else "")
    path.write_text(text)


async def serve_repository_coap(repo: Any) -> tuple[Any, int]:
    """Mount a repository's ``/fw`` the way ``fotakit server`` does (in a FastSite) on a
    loopback CoAP endpoint; returns (aiocoap context, port)."""
    from fotakit.coap import FastSite, create_endpoint
    from fotakit.repository.coap import coap_resources

    site = FastSite()
    for path, resource in coap_resources(repo):
        site.add_fast_resource(path[0], resource)
    return await create_endpoint(site, "127.0.0.1", 0)


class ServedRepository:
    """A benchmark script re-run with ``--serve <repo_dir> <db_url>`` as the delivery
    server, in its own process: it prints its ports as one JSON line and serves until its
    stdin closes."""

    def __init__(self, script: str, repo_dir: Path, db_url: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, script, "--serve", str(repo_dir), db_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.ports: dict[str, int] = {
            k: int(v) for k, v in json.loads(self.proc.stdout.readline()).items()
        }

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
