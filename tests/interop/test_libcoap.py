"""libcoap's ``coap-client-notls`` (Debian libcoap3-bin) talks raw CoAP to fotakit.

Someone else's CoAP stack, driven from the command line, against:

* the fotakit LwM2M server's Registration Interface (TS Core 1.1.1 §6.2): Register with
  Content-Format 40, Update and De-register at the Location-Path it was given, and the
  precise error codes for bad requests;
* a fotakit client's device-management endpoint as a CoAP server, for a block-wise
  (RFC 7959 Block2) Read of an Opaque resource larger than one block.

``-v 6`` makes coap-client print every message it sends and receives on stdout, e.g.
``v:1 t:ACK c:2.01 i:6d94 {01} [ Location-Path:rd, Location-Path:abc ]``; the tests
parse those lines for the response code and options.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

import pytest

from fotakit.client import ClientConfig, LwM2MClient, LwM2MObject, SimpleInstance
from fotakit.lwm2m.model import ObjectDef, Operations, ResourceDef, ResourceType
from fotakit.server import Deregistered, LwM2MServer, Registered, Updated

pytestmark = pytest.mark.interop

ServerEvents = Any  # conftest.ServerEvents (conftest is pytest's to import)

# Bounds one coap-client run; coap-client's own -B is set a little lower.
RUN_TIMEOUT = 10.0

_MESSAGE = re.compile(
    r"^v:1 t:(?P<type>\w+) c:(?P<code>[\w.]+) i:\w+ \{[0-9a-f]*\} \[(?P<opts>.*?)\]"
)
_REQUEST_CODES = {"GET", "POST", "PUT", "DELETE", "FETCH", "PATCH", "iPATCH"}


@dataclass
class CoapRun:
    """What one coap-client-notls run printed, parsed."""

    returncode: int
    stdout: str
    stderr: str
    responses: list[tuple[str, list[tuple[str, str]]]] = field(default_factory=list)

    @property
    def code(self) -> str:
        """The code of the final response (an empty ACK of a separate response skipped)."""
        finals = [code for code, _ in self.responses if code != "0.00"]
        assert finals, f"coap-client printed no response:\n{self.stdout}\n{self.stderr}"
        return finals[-1]

    def options(self, name: str) -> list[str]:
        """Values of option ``name`` in the final response."""
        finals = [opts for code, opts in self.responses if code != "0.00"]
        return [value for key, value in finals[-1] if key == name]


def _parse(stdout: str) -> list[tuple[str, list[tuple[str, str]]]]:
    responses = []
    for line in stdout.splitlines():
        m = _MESSAGE.match(line)
        if m is None or m["code"] in _REQUEST_CODES:
            continue
        opts = []
        for item in m["opts"].split(","):
            key, sep, value = item.strip().partition(":")
            if sep:
                opts.append((key, value))
        responses.append((m["code"], opts))
    return responses


async def coap(binary: str, options: str, uri: str) -> CoapRun:
    """Run ``coap-client-notls -v 6 <options> <uri>`` and parse the messages it printed.

    ``options`` is split on whitespace (none of ours has a space in an argument).
    """
    proc = await asyncio.create_subprocess_exec(
        binary,
        "-v",
        "6",
        "-B",
        str(int(RUN_TIMEOUT) - 2),
        *options.split(),
        uri,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), RUN_TIMEOUT)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    stdout = out.decode("utf-8", "replace")
    return CoapRun(proc.returncode or 0, stdout, err.decode("utf-8", "replace"), _parse(stdout))


REGISTER = "-m post -t 40 -e </1/0>,</3/0>,</5/0>"


async def test_register_update_deregister_with_libcoap(
    server: LwM2MServer, server_events: ServerEvents, coap_client: str
) -> None:
    base = f"coap://127.0.0.1:{server.port}"
    reg = await coap(coap_client, REGISTER, f"{base}/rd?ep=libcoap-1&lt=60&lwm2m=1.1&b=U")
    assert reg.code == "2.01", reg.stdout + reg.stderr
    location = reg.options("Location-Path")
    assert len(location) == 2 and location[0] == "rd" and location[1], location
    registered = await server_events.next(Registered, "libcoap-1")
    registration = server.registrations["libcoap-1"]
    assert registered.registration == registration
    assert registration.registration_id == location[1]
    assert registration.lifetime == 60
    assert registration.lwm2m_version == "1.1"
    assert registration.object_ids() == {1, 3, 5}
    here = f"{base}/{'/'.join(location)}"

    update = await coap(coap_client, "-m post", f"{here}?lt=120")
    assert update.code == "2.04", update.stdout + update.stderr
    updated = await server_events.next(Updated, "libcoap-1")
    assert updated.registration.lifetime == 120
    assert server.registrations["libcoap-1"].lifetime == 120
    assert server.registrations["libcoap-1"].registration_id == location[1]

    delete = await coap(coap_client, "-m delete", here)
    assert delete.code == "2.02", delete.stdout + delete.stderr
    await server_events.next(Deregistered, "libcoap-1")
    assert "libcoap-1" not in server.registrations

    again = await coap(coap_client, "-m delete", here)
    assert again.code == "4.04", again.stdout + again.stderr


async def test_register_without_endpoint_name_answers_4_00(
    server: LwM2MServer, coap_client: str
) -> None:
    run = await coap(coap_client, REGISTER, f"coap://127.0.0.1:{server.port}/rd?lt=60&lwm2m=1.1")
    assert run.code == "4.00", run.stdout + run.stderr
    assert dict(server.registrations) == {}


async def test_update_of_unknown_registration_answers_4_04(
    server: LwM2MServer, coap_client: str
) -> None:
    run = await coap(coap_client, "-m post", f"coap://127.0.0.1:{server.port}/rd/no-such-id?lt=60")
    assert run.code == "4.04", run.stdout + run.stderr


async def test_register_with_unsupported_version_answers_4_12(
    server: LwM2MServer, coap_client: str
) -> None:
    uri = f"coap://127.0.0.1:{server.port}/rd?ep=libcoap-v9&lt=60&lwm2m=9.9"
    run = await coap(coap_client, REGISTER, uri)
    assert run.code == "4.12", run.stdout + run.stderr
    assert "libcoap-v9" not in server.registrations


# -- block-wise GET from a fotakit client -------------------------------------------------

BLOB_OBJECT = ObjectDef(
    id=32769,
    name="Interop Blob",
    resources={
        0: ResourceDef(0, "Blob", Operations.R, ResourceType.OPAQUE, mandatory=True),
    },
)


@pytest.mark.parametrize("block_size", [64, 1024])
async def test_blockwise_get_of_large_opaque_resource_from_fotakit_client(
    server: LwM2MServer, coap_client: str, tmp_path: FsPath, block_size: int
) -> None:
    blob = bytes((i * 7 + i // 256) % 256 for i in range(4096))
    config = ClientConfig(
        endpoint="blob-device", server_uri=f"coap://127.0.0.1:{server.port}", lifetime=60
    )
    blob_object = LwM2MObject(BLOB_OBJECT, {0: SimpleInstance({0: blob})})
    async with LwM2MClient(config, objects=[blob_object]) as client:
        await client.wait_registered(5.0)
        out = tmp_path / "blob.bin"
        uri = f"coap://127.0.0.1:{client.port}/32769/0/0"
        run = await coap(coap_client, f"-b {block_size} -o {out}", uri)
        assert run.code == "2.05", run.stdout + run.stderr
        blocks = [opts for code, opts in run.responses if code == "2.05"]
        count = len(blob) // block_size
        expected = [f"{n}/{'M' if n < count - 1 else '_'}/{block_size}" for n in range(count)]
        assert [dict(b).get("Block2") for b in blocks] == expected
        assert all(dict(b)["Content-Format"] == "application/octet-stream" for b in blocks)
        assert out.read_bytes() == blob
