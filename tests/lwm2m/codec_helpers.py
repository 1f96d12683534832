"""Object definitions, vectors and Hypothesis strategies shared by the codec tests.

The definitions are written here rather than taken from the built-in registry so the
codec tests do not depend on it; they copy the types and multiplicities of the OMA
registry's objects 1, 2, 3 and 5 (the resources the spec examples use), and of the test
objects 65 and 66 from TS 1.0.1 figure 28 as Leshan's tests define them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import strategies as st

from fotakit.lwm2m.model import (
    EMPTY_INSTANCE,
    ObjectDef,
    ObjectRegistry,
    ObjLink,
    Operations,
    ResourceDef,
    ResourceType,
    Value,
)
from fotakit.lwm2m.path import Path

T = ResourceType


def _obj(object_id: int, *resources: tuple[int, ResourceType, bool]) -> ObjectDef:
    return ObjectDef(
        id=object_id,
        name=f"object {object_id}",
        multiple=True,
        resources={
            rid: ResourceDef(rid, f"r{rid}", Operations.RW, rtype, multiple=multi)
            for rid, rtype, multi in resources
        },
    )


SERVER = _obj(
    1,
    (0, T.INTEGER, False),
    (1, T.INTEGER, False),
    (6, T.BOOLEAN, False),
    (7, T.STRING, False),
    (8, T.NONE, False),
)
ACL = _obj(
    2, (0, T.INTEGER, False), (1, T.INTEGER, False), (2, T.INTEGER, True), (3, T.INTEGER, False)
)
DEVICE = _obj(
    3,
    (0, T.STRING, False),
    (1, T.STRING, False),
    (2, T.STRING, False),
    (3, T.STRING, False),
    (4, T.NONE, False),
    (5, T.NONE, False),
    (6, T.INTEGER, True),
    (7, T.INTEGER, True),
    (8, T.INTEGER, True),
    (9, T.INTEGER, False),
    (10, T.INTEGER, False),
    (11, T.INTEGER, True),
    (12, T.NONE, False),
    (13, T.TIME, False),
    (14, T.STRING, False),
    (15, T.STRING, False),
    (16, T.STRING, False),
)
FIRMWARE = _obj(
    5,
    (0, T.OPAQUE, False),
    (1, T.STRING, False),
    (3, T.INTEGER, False),
    (8, T.INTEGER, True),
    (13, T.UNSIGNED_INTEGER, False),
)
OBJ65 = _obj(65, (0, T.OBJLNK, True), (1, T.STRING, False), (2, T.INTEGER, False))
OBJ66 = _obj(66, (0, T.STRING, False), (1, T.STRING, False), (2, T.OBJLNK, False))
#: One resource of every type, single (ID = n) and multiple (ID = 100 + n).
_TYPES = [t for t in ResourceType if t is not ResourceType.NONE]
ALL_TYPES = _obj(
    1000,
    *[(i, t, False) for i, t in enumerate(_TYPES)],
    *[(100 + i, t, True) for i, t in enumerate(_TYPES)],
)

REGISTRY = ObjectRegistry([SERVER, ACL, DEVICE, FIRMWARE, OBJ65, OBJ66, ALL_TYPES])
EMPTY_REGISTRY = ObjectRegistry()


def p(text: str) -> Path:
    return Path.parse(text)


# TS Core 1.0 §6.4.3.1 example (Device object instance 0 as resource TLVs), hex as in
# eclipse-leshan/leshan leshan-lwm2m-core/src/test/java/org/eclipse/leshan/core/node/codec/
# LwM2mNodeDecoderTest.java, ENCODED_DEVICE_WITHOUT_INSTANCE ("Example from LWM2M spec").
DEVICE_TLV = bytes.fromhex(
    "C800144F70656E204D6F62696C6520416C6C69616E6365C801164c69676874776569676874204d324d20"
    "436c69656e74C80209333435303030313233C303312E30860641000141010588070842000ED842011388"
    "870841007D42010384C10964C10A0F830B410000C40D5182428FC60E2B30323A3030C11055"
)
# Same source: the instance wrapped in one Object Instance TLV (spec §6.4.3.2 A).
DEVICE_TLV_WITH_INSTANCE = bytes.fromhex("080079") + DEVICE_TLV
# Same source: ENCODED_ACL (spec §6.4.3.2 B), two ACL instances.
ACL_TLV = bytes.fromhex(
    "08000EC10001C101008302417F07C1037F080212C10003C101008702417F0761013601C1037F"
)
# Same source: ENCODED_SERVER (spec §6.4.3.2 C).
SERVER_TLV = bytes.fromhex("08000FC10001C40100015180C10601C10755")
# Same source: ENCODED_OBJ65 (spec §6.4.3.3 1, Objlnk values).
OBJ65_TLV = bytes.fromhex(
    "88000C440000420000440100420001C8010D38363133383030373535353030C40212345678"
)
# Same source: ENCODED_OBJ66 (spec §6.4.3.3 2).
OBJ66_TLV = bytes.fromhex(
    "080026C8000B6D79536572766963652031C8010F496E7465726E65742E31352E323334C4020043000008"
    "0126C8000B6D79536572766963652032C8010F496E7465726E65742E31352E323335C402FFFFFFFF"
)

#: The Device instance of the spec examples, as Content.
DEVICE_CONTENT: dict[Path, Value] = {
    p("/3/0/0"): "Open Mobile Alliance",
    p("/3/0/1"): "Lightweight M2M Client",
    p("/3/0/2"): "345000123",
    p("/3/0/3"): "1.0",
    p("/3/0/6/0"): 1,
    p("/3/0/6/1"): 5,
    p("/3/0/7/0"): 3800,
    p("/3/0/7/1"): 5000,
    p("/3/0/8/0"): 125,
    p("/3/0/8/1"): 900,
    p("/3/0/9"): 100,
    p("/3/0/10"): 15,
    p("/3/0/11/0"): 0,
    p("/3/0/13"): datetime.fromtimestamp(1367491215, UTC),
    p("/3/0/14"): "+02:00",
    p("/3/0/16"): "U",
}


# -- Hypothesis strategies -----------------------------------------------------------

_TIMES = st.integers(min_value=-(2**35), max_value=2**37).map(
    lambda s: datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=s)
)
_FLOATS = st.floats(allow_nan=False, allow_infinity=False)


def values_of(rtype: ResourceType) -> st.SearchStrategy[Value]:
    """Canonical Python values of a resource type (what decoders return)."""
    match rtype:
        case ResourceType.INTEGER:
            return st.integers(min_value=-(2**63), max_value=2**63 - 1)
        case ResourceType.UNSIGNED_INTEGER:
            return st.integers(min_value=0, max_value=2**64 - 1)
        case ResourceType.FLOAT:
            return _FLOATS
        case ResourceType.BOOLEAN:
            return st.booleans()
        case ResourceType.STRING | ResourceType.CORELNK:
            return st.text()
        case ResourceType.OPAQUE:
            return st.binary()
        case ResourceType.TIME:
            return _TIMES
        case ResourceType.OBJLNK:
            return st.builds(ObjLink, st.integers(0, 65535), st.integers(0, 65535))
    raise AssertionError(rtype)


_IDS = st.integers(min_value=0, max_value=65534)
_SMALL_IDS = st.sampled_from([0, 1, 7, 8, 255, 256, 65534])


@st.composite
def resource_content(
    draw: st.DrawFn, instance: Path, *, allow_empty_multi: bool = False
) -> dict[Path, Value]:
    """The value(s) of one resource of object 1000 in ``instance``, single or multiple."""
    index = draw(st.integers(0, len(_TYPES) - 1))
    rtype = _TYPES[index]
    if draw(st.booleans()):
        return {instance.child(index): draw(values_of(rtype))}
    res = instance.child(100 + index)
    ids = draw(st.sets(_SMALL_IDS | _IDS, min_size=0 if allow_empty_multi else 1, max_size=4))
    return {res.child(i): draw(values_of(rtype)) for i in ids}


@st.composite
def instance_content(draw: st.DrawFn, instance: Path) -> dict[Path, Value]:
    content: dict[Path, Value] = {}
    for _ in range(draw(st.integers(0, 5))):
        content.update(draw(resource_content(instance)))
    return content or {instance: EMPTY_INSTANCE}


@st.composite
def object_content(draw: st.DrawFn, obj: Path) -> dict[Path, Value]:
    content: dict[Path, Value] = {}
    for iid in draw(st.sets(_SMALL_IDS, max_size=3)):
        content.update(draw(instance_content(obj.child(iid))))
    return content
