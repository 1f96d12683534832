"""DDF XML loader: real registry documents, schema violations, unsafe XML, garbage."""

from __future__ import annotations

import pathlib
from xml.sax.saxutils import escape

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fotakit.lwm2m.ddf import MAX_DDF_BYTES, DdfError, load_ddf
from fotakit.lwm2m.model import ObjectDef, Operations, ResourceDef, ResourceType
from fotakit.lwm2m.objects import BUILTIN_OBJECTS, builtin_registry
from fotakit.lwm2m.path import Path

DATA = pathlib.Path(__file__).parent / "data"
TEMPERATURE = DATA / "3303.xml"


def render(*objects: ObjectDef, namespace: str = "") -> str:
    """A DDF document for ``objects`` in the registry's layout."""

    def el(name: str, text: str) -> str:
        return f"<{name}>{escape(text)}</{name}>"

    def yes_no(flag: bool, yes: str, no: str) -> str:
        return yes if flag else no

    parts = [f'<?xml version="1.0" encoding="UTF-8"?>\n<LWM2M{namespace}>']
    for obj in objects:
        parts.append('<Object ObjectType="MODefinition">')
        parts += [
            el("Name", obj.name),
            el("Description1", obj.description),
            el("ObjectID", str(obj.id)),
            el("ObjectURN", obj.urn),
            el("LWM2MVersion", obj.lwm2m_version),
            el("ObjectVersion", obj.version),
            el("MultipleInstances", yes_no(obj.multiple, "Multiple", "Single")),
            el("Mandatory", yes_no(obj.mandatory, "Mandatory", "Optional")),
            "<Resources>",
        ]
        for res in obj.resources.values():
            parts += [
                f'<Item ID="{res.id}">',
                el("Name", res.name),
                el("Operations", res.operations.value),
                el("MultipleInstances", yes_no(res.multiple, "Multiple", "Single")),
                el("Mandatory", yes_no(res.mandatory, "Mandatory", "Optional")),
                el("Type", "" if res.type is ResourceType.NONE else res.type.value),
                el("RangeEnumeration", res.range),
                el("Units", res.units),
                el("Description", res.description),
                "</Item>",
            ]
        parts.append("</Resources><Description2></Description2></Object>")
    parts.append("</LWM2M>")
    return "\n".join(parts)


def test_loads_the_registry_temperature_object() -> None:
    [temp] = load_ddf(TEMPERATURE)
    assert (temp.id, temp.name, temp.urn) == (3303, "Temperature", "urn:oma:lwm2m:ext:3303")
    assert (temp.version, temp.lwm2m_version, temp.multiple, temp.mandatory) == (
        "1.0",
        "1.0",
        True,
        False,
    )
    assert set(temp.resources) == {5700, 5601, 5602, 5603, 5604, 5701, 5605}
    value = temp.resources[5700]
    assert value.name == "Sensor Value" and value.type is ResourceType.FLOAT
    assert value.operations is Operations.R and value.mandatory and not value.multiple
    reset = temp.resources[5605]
    assert reset.executable and reset.type is ResourceType.NONE
    assert temp.description.startswith("This IPSO object")


def test_loaded_objects_join_a_registry() -> None:
    registry = builtin_registry()
    for obj in load_ddf(str(TEMPERATURE)):
        registry.add(obj)
    res = registry.resource(Path(3303, 0, 5700))
    assert res is not None and res.name == "Sensor Value"
    assert 5 in registry  # the built-ins stay


def test_accepts_text_bytes_and_path_objects_alike() -> None:
    raw = TEMPERATURE.read_bytes()
    from_bytes = load_ddf(raw)
    assert load_ddf(raw.decode("utf-8")) == from_bytes
    assert load_ddf(TEMPERATURE) == from_bytes
    assert load_ddf(str(TEMPERATURE)) == from_bytes


@pytest.mark.parametrize("obj", BUILTIN_OBJECTS, ids=lambda o: str(o.id))
def test_builtin_objects_survive_a_ddf_round_trip(obj: ObjectDef) -> None:
    [loaded] = load_ddf(render(obj))
    assert loaded.id == obj.id and loaded.name == obj.name and loaded.urn == obj.urn
    assert dict(loaded.resources) == dict(obj.resources)


def test_several_objects_and_a_default_namespace() -> None:
    a = ObjectDef(id=10, name="A", resources={})
    b = ObjectDef(id=11, name="B", multiple=True, resources={})
    loaded = load_ddf(render(a, b, namespace=' xmlns="urn:example:ddf"'))
    assert [o.id for o in loaded] == [10, 11] and loaded[1].multiple


GOOD_ITEM = (
    "<Name>X</Name><Operations>R</Operations><MultipleInstances>Single</MultipleInstances>"
    "<Mandatory>Optional</Mandatory><Type>Integer</Type>"
)


def doc(items: str = f'<Item ID="1">{GOOD_ITEM}</Item>', **fields: str) -> str:
    values = {
        "Name": "Thing",
        "ObjectID": "33000",
        "MultipleInstances": "Single",
        "Mandatory": "Optional",
        "ObjectVersion": "1.0",
    }
    values.update(fields)
    body = "".join(f"<{k}>{v}</{k}>" for k, v in values.items() if v != "<absent>")
    return f"<LWM2M><Object>{body}<Resources>{items}</Resources></Object></LWM2M>"


def item(**fields: str) -> str:
    values = {
        "Name": "X",
        "Operations": "R",
        "MultipleInstances": "Single",
        "Mandatory": "Optional",
        "Type": "Integer",
    }
    values.update(fields)
    body = "".join(f"<{k}>{v}</{k}>" for k, v in values.items() if v != "<absent>")
    return f'<Item ID="{fields.get("ID", "1")}">{body}</Item>'


def test_the_helper_document_is_valid() -> None:
    [obj] = load_ddf(doc())
    assert obj.id == 33000 and obj.resources[1].type is ResourceType.INTEGER


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("<LWM2M><Object>", "not well-formed"),
        ("<Objects/>", "root element is <Objects>"),
        ("<LWM2M></LWM2M>", "holds no <Object>"),
        (doc(ObjectID="70000"), "<ObjectID> '70000' is not an ID"),
        (doc(ObjectID="abc"), "<ObjectID> 'abc' is not an ID"),
        (doc(ObjectID="<absent>"), "missing <ObjectID>"),
        (doc(Name=""), "Object 33000: <Name> is empty"),
        (doc(MultipleInstances="Many"), "Object 33000: <MultipleInstances> is 'Many'"),
        (doc(Mandatory="Yes"), "Object 33000: <Mandatory> is 'Yes'"),
        (doc(ObjectVersion="v2"), "<ObjectVersion> 'v2' is not a version"),
        (doc(items=item(Operations="RX")), "Item 1: <Operations> 'RX'"),
        (doc(items=item(Type="Double")), "Item 1: <Type> 'Double'"),
        (doc(items=item(Operations="E")), "Item 1: executable resource has <Type>"),
        (doc(items=item(Type="")), "Item 1: <Type> is empty but the resource"),
        (doc(items=item(MultipleInstances="")), "Item 1: <MultipleInstances> is ''"),
        (doc(items=item(Mandatory="<absent>")), "Item 1: missing <Mandatory>"),
        (doc(items=item(ID="-1")), "Item ID '-1' is not an ID"),
        (doc(items="<Item><Name>X</Name></Item>"), "<Item> without an ID"),
        (doc(items=item() + item()), "Item 1: resource ID defined twice"),
        (doc(items="<Thing/>"), "unexpected <Thing> in <Resources>"),
        (
            "<LWM2M><Object><Name>A</Name><ObjectID>1</ObjectID></Object></LWM2M>",
            "Object 1: missing <Resources>",
        ),
        (doc().replace("</LWM2M>", doc()[7:]), "Object 33000: defined twice"),
    ],
)
def test_broken_documents_raise_precise_errors(document: str, message: str) -> None:
    with pytest.raises(DdfError) as info:
        load_ddf(document)
    assert message in str(info.value)


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<LWM2M><Object><Name>&lol4;</Name></Object></LWM2M>"""

EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE LWM2M [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<LWM2M><Object><Name>&xxe;</Name></Object></LWM2M>"""

EXTERNAL_DTD = """<?xml version="1.0"?>
<!DOCTYPE LWM2M SYSTEM "http://127.0.0.1:9/evil.dtd">
<LWM2M><Object><Name>x</Name></Object></LWM2M>"""


@pytest.mark.parametrize("document", [BILLION_LAUGHS, EXTERNAL_ENTITY, EXTERNAL_DTD])
def test_unsafe_xml_is_refused(document: str) -> None:
    with pytest.raises(DdfError, match="unsafe XML refused"):
        load_ddf(document)


def test_oversized_documents_are_refused_before_parsing(tmp_path: pathlib.Path) -> None:
    big = doc().replace("<LWM2M>", "<LWM2M>" + " " * MAX_DDF_BYTES)
    with pytest.raises(DdfError, match="bytes, more than"):
        load_ddf(big.encode())
    path = tmp_path / "big.xml"
    path.write_text(big)
    with pytest.raises(DdfError, match="bytes, more than"):
        load_ddf(path)


def test_missing_file_is_a_ddf_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(DdfError, match="cannot read"):
        load_ddf(tmp_path / "absent.xml")


names = (
    st.text(alphabet=st.characters(exclude_categories=["Cs", "Cc"]), min_size=1, max_size=20)
    .map(str.strip)
    .filter(bool)
)
types = st.sampled_from([t for t in ResourceType if t is not ResourceType.NONE])


@st.composite
def resource_defs(draw: st.DrawFn, rid: int) -> ResourceDef:
    executable = draw(st.booleans())
    return ResourceDef(
        id=rid,
        name=draw(names),
        operations=Operations.E
        if executable
        else draw(st.sampled_from([Operations.R, Operations.W, Operations.RW, Operations.NONE])),
        type=ResourceType.NONE if executable else draw(types),
        multiple=False if executable else draw(st.booleans()),
        mandatory=draw(st.booleans()),
        range=draw(st.sampled_from(["", "0..255", "1..65534"])),
        units=draw(st.sampled_from(["", "s", "dBm", "/100"])),
        description=draw(names),
    )


@st.composite
def object_defs(draw: st.DrawFn) -> ObjectDef:
    rids = draw(st.sets(st.integers(0, 65534), max_size=6))
    resources = {rid: draw(resource_defs(rid)) for rid in sorted(rids)}
    return ObjectDef(
        id=draw(st.integers(0, 65534)),
        name=draw(names),
        version=draw(st.sampled_from(["1.0", "1.1", "2.3"])),
        multiple=draw(st.booleans()),
        mandatory=draw(st.booleans()),
        urn=draw(st.sampled_from(["", "urn:oma:lwm2m:ext:3303"])),
        lwm2m_version=draw(st.sampled_from(["1.0", "1.1", "1.2"])),
        description=draw(names),
        resources=resources,
    )


@settings(max_examples=60)
@given(object_defs())
def test_generated_definitions_round_trip(obj: ObjectDef) -> None:
    assert load_ddf(render(obj)) == [obj]


@settings(max_examples=150)
@given(st.binary(max_size=300))
def test_garbage_bytes_give_ddf_error_or_objects(data: bytes) -> None:
    try:
        result = load_ddf(data)
    except DdfError:
        return
    assert all(isinstance(o, ObjectDef) for o in result)


@settings(max_examples=150)
@given(st.text(alphabet='<>/="!&;[]? LWM2MObjectItemIDName1E', max_size=200))
def test_garbage_markup_gives_ddf_error_or_objects(text: str) -> None:
    try:
        result = load_ddf("<" + text)
    except DdfError:
        return
    assert all(isinstance(o, ObjectDef) for o in result)


@given(st.text(max_size=30).filter(lambda t: not t.lstrip("\ufeff \t\r\n").startswith("<")))
def test_text_that_is_not_xml_is_read_as_a_path(text: str) -> None:
    # No such file exists under these names in the test's working directory.
    with pytest.raises(DdfError, match="cannot read"):
        load_ddf(text + "\x00")
