"""Run a SlotStore operation sequence in a subprocess that the test SIGKILLs at a chosen point.

Usage: ``python slot_crash_helper.py ROOT [--max-trial-boots N] [--kill-at-replace K] OP...``

Ops run in order against the store at ROOT (already initialised by the test):

- ``boot``: ``store.boot()`` and print ``BOOT <slot> <trial> <trial_boot>``;
- ``restart``: drop the store and open a new one (an in-process reboot);
- ``write-half`` / ``write-all``: open the inactive slot and pwrite half / all of the
  update package in 1 KiB blocks (fsynced);
- ``finish``: ``SlotWriter.finish()``; ``verify``: verify the package in the slot with the
  real verifier (``min_sequence=highest_sequence``) and ``mark_verified``;
- ``pending``, ``confirm``, ``revert-health``: the SlotStore calls;
- ``pause``: print ``PAUSE <label>`` and block reading stdin (the test kills us here).

``--kill-at-replace K`` instead blocks inside the K-th (0-based) ``os.replace`` of the run,
after the temporary file is written and fsynced but before it is renamed over its target
(the worst moment for an atomic write); it prints ``PAUSE replace#K <op> <file>``.
``--count`` prints ``REPLACES <n>`` at the end (how many commit points the ops have).

The payloads are deterministic (:func:`payload_for`), so the test can recompute digests.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path

from fotakit.agent.slots import REASON_HEALTH_CHECK, SlotStore, SlotWriter
from fotakit.packages import (
    DeviceIdentity,
    TrustStore,
    build_package_in_memory,
    generate_key,
    verify_package,
)

VENDOR = "example.com"
CLASS = "crash-board"
OLD_VERSION = "1.0.0"
OLD_SEQUENCE = 1
NEW_VERSION = "2.0.0"
NEW_SEQUENCE = 5
BLOCK = 1024


def payload_for(version: str, size: int = 40_000) -> bytes:
    """Deterministic firmware bytes for ``version`` (not compressible into a pattern)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{version}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def pause(label: str) -> None:
    print(f"PAUSE {label}", flush=True)
    sys.stdin.buffer.read()  # the test never writes or closes: we block until SIGKILL
    raise SystemExit("stdin closed: the test did not kill the helper")


class ReplaceTrap:
    """Wraps os.replace: counts calls and blocks at the chosen one, before renaming."""

    def __init__(self, kill_at: int | None) -> None:
        self.kill_at = kill_at
        self.count = 0
        self.op = "-"
        self._real = os.replace

    def __call__(self, src: object, dst: object, **kwargs: object) -> None:
        if self.count == self.kill_at:
            pause(f"replace#{self.count} {self.op} {Path(str(dst)).name}")
        self.count += 1
        self._real(src, dst, **kwargs)  # type: ignore[call-overload]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("root", type=Path)
    parser.add_argument("ops", nargs="+")
    parser.add_argument("--max-trial-boots", type=int, default=3)
    parser.add_argument("--kill-at-replace", type=int, default=None)
    parser.add_argument("--count", action="store_true")
    args = parser.parse_args()

    trap = ReplaceTrap(args.kill_at_replace)
    os.replace = trap  # type: ignore[assignment]

    key = generate_key("ed25519")
    trust = TrustStore()
    trust.add(None, key.public_key())
    identity = DeviceIdentity.from_names(VENDOR, CLASS)
    package = build_package_in_memory(
        payload_for(NEW_VERSION),
        version=NEW_VERSION,
        vendor_domain=VENDOR,
        class_name=CLASS,
        sequence=NEW_SEQUENCE,
        key=key,
    )

    store = SlotStore(args.root, max_trial_boots=args.max_trial_boots)
    writer: SlotWriter | None = None
    for op in args.ops:
        trap.op = op
        if op == "boot":
            d = store.boot()
            print(f"BOOT {d.slot} {d.trial} {d.trial_boot}", flush=True)
        elif op == "restart":
            store = SlotStore(args.root, max_trial_boots=args.max_trial_boots)
        elif op in ("write-half", "write-all"):
            writer = store.open_inactive(expected_size=len(package))
            end = len(package) // 2 if op == "write-half" else len(package)
            for offset in range(0, end, BLOCK):
                writer.write(offset, package[offset : min(offset + BLOCK, end)])
            writer.fsync()
        elif op == "finish":
            assert writer is not None
            writer.finish()
        elif op == "verify":
            path = store.image_path(store.inactive_name)
            verified = verify_package(
                path, trust, identity=identity, min_sequence=store.highest_sequence
            )
            store.mark_verified(store.describe(verified, pkg_name="crash-fw"))
        elif op == "pending":
            store.mark_pending()
        elif op == "confirm":
            store.confirm()
        elif op == "revert-health":
            store.revert(REASON_HEALTH_CHECK)
        elif op == "pause":
            pause("end")
        else:
            raise SystemExit(f"unknown op {op}")
    if args.count:
        print(f"REPLACES {trap.count}", flush=True)


if __name__ == "__main__":
    main()
