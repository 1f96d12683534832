"""Registration Interface wire format: Register and Update (TS Core 1.1.1 §5.3, §6.2)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fotakit.lwm2m.linkformat import Link
from fotakit.lwm2m.registration import (
    DEFAULT_LIFETIME,
    MAX_ENDPOINT_BYTES,
    MAX_LIFETIME,
    RegisterParams,
    RegistrationError,
    UnsupportedVersion,
    UpdateParams,
    parse_register,
    parse_update,
    register_payload,
    register_query,
    update_payload,
    update_query,
)

PAYLOAD = b'</>;rt="oma.lwm2m";ct=110,</1/0>,</3/0>,</5>;ver=1.2,</5/0>'


def test_register_of_a_1_1_client_in_queue_mode() -> None:
    params = parse_register(
        ["ep=urn:imei:490154203237518", "lt=300", "lwm2m=1.1", "b=U", "Q"], PAYLOAD
    )
    assert params.endpoint == "urn:imei:490154203237518"
    assert (params.lifetime, params.lwm2m_version, params.binding) == (300, "1.1", "U")
    assert params.queue_mode is True and params.sms is None
    assert params.root_path == "/" and params.content_formats == (110,)
    assert params.instances == {1: [0], 3: [0], 5: [0]}
    assert params.object_versions == {5: "1.2"}
    assert [link.target for link in params.objects] == ["/1/0", "/3/0", "/5", "/5/0"]


def test_register_defaults_lifetime_binding_and_version() -> None:
    params = parse_register(["ep=dev"], b"</3/0>")
    assert params.lifetime == DEFAULT_LIFETIME == 86400
    assert (params.binding, params.queue_mode, params.lwm2m_version) == ("U", False, "1.0")
    assert params.content_formats == ()


@pytest.mark.parametrize(
    ("b", "binding", "queue"),
    [
        ("U", "U", False),
        ("UQ", "U", True),
        ("S", "S", False),
        ("SQ", "S", True),
        ("US", "US", False),
        ("UQS", "US", True),
    ],
)
def test_lwm2m_1_0_bindings_carry_queue_mode_in_b(b: str, binding: str, queue: bool) -> None:
    params = parse_register(["ep=d", "lwm2m=1.0", f"b={b}"], b"")
    assert (params.binding, params.queue_mode) == (binding, queue)


@pytest.mark.parametrize("b", ["T", "N", "UT", "USQ", "QU", "", "u", "UU"])
def test_lwm2m_1_0_refuses_other_bindings(b: str) -> None:
    with pytest.raises(RegistrationError, match=r"not valid for LwM2M 1\.0"):
        parse_register(["ep=d", "lwm2m=1.0", f"b={b}"], b"")


@pytest.mark.parametrize("b", ["U", "T", "S", "N", "UT", "UTSN", "NU"])
def test_lwm2m_1_1_bindings_are_sets_of_transports(b: str) -> None:
    assert parse_register(["ep=d", "lwm2m=1.1", f"b={b}"], b"").binding == b


def test_lwm2m_1_1_refuses_q_inside_b() -> None:
    with pytest.raises(RegistrationError, match="queue mode is the Q parameter"):
        parse_register(["ep=d", "lwm2m=1.2", "b=UQ"], b"")


@pytest.mark.parametrize("b", ["", "X", "UU", "u"])
def test_lwm2m_1_1_refuses_unknown_or_repeated_letters(b: str) -> None:
    with pytest.raises(RegistrationError, match="set of the letters"):
        parse_register(["ep=d", "lwm2m=1.1", f"b={b}"], b"")


def test_q_parameter_is_ignored_by_lwm2m_1_0_and_must_be_value_less() -> None:
    assert parse_register(["ep=d", "lwm2m=1.0", "Q"], b"").queue_mode is False
    with pytest.raises(RegistrationError, match="takes no value"):
        parse_register(["ep=d", "lwm2m=1.1", "Q=1"], b"")


@pytest.mark.parametrize("version", ["1.3", "2.0", "1", "", "abc", "1.1 "])
def test_unsupported_versions_answer_4_12(version: str) -> None:
    with pytest.raises(UnsupportedVersion) as info:
        parse_register(["ep=d", f"lwm2m={version}"], b"")
    assert str(info.value.code) == "4.12 Precondition Failed"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ([], "missing endpoint name"),
        (["lt=60"], "missing endpoint name"),
        (["ep"], "'ep' needs a value"),
        (["ep="], "is empty"),
        (["ep=" + "x" * (MAX_ENDPOINT_BYTES + 1)], "more than 255"),
        (["ep=" + "é" * 128], "256 bytes, more than 255"),
        (["ep=a\x00b"], "control character"),
        (["ep=a", "ep=b"], "'ep' given twice"),
        (["ep=a", "lt=-1"], "not an integer"),
        (["ep=a", "lt=1.5"], "not an integer"),
        (["ep=a", "lt=+5"], "not an integer"),
        (["ep=a", "lt="], "not an integer"),
        (["ep=a", f"lt={MAX_LIFETIME + 1}"], "not an integer"),
        (["ep=a", "lt=5", "lt=5"], "'lt' given twice"),
        (["ep=a", "sms=abc"], "MSISDN"),
        (["ep=a", "sms=+1234567890123456"], "MSISDN"),
    ],
)
def test_bad_queries_raise_registration_error_with_4_00(query: list[str], message: str) -> None:
    with pytest.raises(RegistrationError, match=message) as info:
        parse_register(query, b"")
    assert str(info.value.code) == "4.00 Bad Request"


def test_a_10_kb_endpoint_name_is_refused_not_crashed() -> None:
    with pytest.raises(RegistrationError):
        parse_register(["ep=" + "n" * 10_240, "lwm2m=1.1"], PAYLOAD)


def test_unknown_parameters_are_ignored() -> None:
    params = parse_register(["ep=d", "foo=bar", "x", "EP=other", "lt=5"], b"")
    assert (params.endpoint, params.lifetime) == ("d", 5)


def test_lifetime_zero_and_sms_number_are_accepted() -> None:
    params = parse_register(["ep=d", "lt=0", "sms=+15555550100"], b"")
    assert (params.lifetime, params.sms) == (0, "+15555550100")


def test_root_path_is_stripped_from_object_links() -> None:
    payload = b'</lwm2m>;rt="oma.lwm2m";ct="60 110 112",</lwm2m/1/0>,</lwm2m/3303/0>'
    params = parse_register(["ep=d", "lwm2m=1.1"], payload)
    assert params.root_path == "/lwm2m"
    assert params.content_formats == (60, 110, 112)
    assert params.instances == {1: [0], 3303: [0]}


def test_security_and_oscore_links_and_duplicates_are_dropped() -> None:
    params = parse_register(["ep=d"], b"</0/0>,</1/0>,</21/0>,</1/0>,</3>")
    assert [link.target for link in params.objects] == ["/1/0", "/3"]
    assert params.instances == {1: [0], 3: []}


def test_lwm2m_1_0_quoted_ver_is_understood() -> None:
    params = parse_register(["ep=d", "lwm2m=1.0"], b'</5>;ver="1.1",</5/0>')
    assert params.object_versions == {5: "1.1"}


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"\xff\xfe</1/0>", "not UTF-8"),
        (b"</1/0", "payload: not CoRE link format"),
        (b"</1/0/1>", "not an object or object instance"),
        (b"</>", "not an object or object instance"),
        (b"</a/b>", "link </a/b>"),
        (b"</65535>", "link </65535>"),
        (b'</>;rt="oma.lwm2m",</x>;rt="oma.lwm2m"', "more than one"),
        (b'<lwm2m>;rt="oma.lwm2m"', "does not start with /"),
        (b'</lwm2m>;rt="oma.lwm2m",</1/0>', "outside root path"),
        (b'</>;rt="oma.lwm2m";ct=json,</1/0>', "content-format numbers"),
        (b'</>;rt="oma.lwm2m";ct=70000', "content-format numbers"),
        (b"</5>;ver=one", "ver is not a version"),
        (b"</5>;ver", "ver is not a version"),
        (b"</1/0>," * 20_000, "larger than"),
    ],
)
def test_bad_payloads_raise_registration_error(payload: bytes, message: str) -> None:
    with pytest.raises(RegistrationError, match=message):
        parse_register(["ep=d"], payload)


def test_update_carries_only_what_changes() -> None:
    update = parse_update(["lt=600"], b"")
    assert update == UpdateParams(lifetime=600)
    assert update.objects is None and update.binding is None and update.queue_mode is None


def test_update_with_a_new_object_list() -> None:
    update = parse_update(["b=UN", "Q", "sms=123"], b"</1/0>,</3/0>,</3303/0>", lwm2m_version="1.1")
    assert (update.binding, update.queue_mode, update.sms) == ("UN", True, "123")
    assert update.objects is not None
    assert [link.target for link in update.objects] == ["/1/0", "/3/0", "/3303/0"]


def test_update_binding_follows_the_registration_version() -> None:
    assert parse_update(["b=UQ"], b"", lwm2m_version="1.0").queue_mode is True
    assert parse_update(["b=U"], b"", lwm2m_version="1.0").queue_mode is False
    with pytest.raises(RegistrationError):
        parse_update(["b=UQ"], b"", lwm2m_version="1.1")
    with pytest.raises(RegistrationError):
        parse_update(["b=T"], b"", lwm2m_version="1.0")
    # Without the version both spellings are understood.
    assert parse_update(["b=UQ"], b"").queue_mode is True
    assert parse_update(["b=T"], b"").binding == "T"


@pytest.mark.parametrize("query", [["lt=x"], ["b=Z"], ["lt=1", "lt=2"], ["sms="], ["Q=yes"], ["b"]])
def test_bad_updates_raise_registration_error(query: list[str]) -> None:
    with pytest.raises(RegistrationError):
        parse_update(query, b"")


def test_register_query_spells_queue_mode_per_version() -> None:
    objects = [Link("/1/0"), Link("/5", {"ver": "1.1"}), Link("/5/0")]
    v10 = RegisterParams("dev", 60, "1.0", "US", True, "123", objects)
    assert register_query(v10) == ["ep=dev", "lt=60", "lwm2m=1.0", "b=UQS", "sms=123"]
    assert register_payload(v10) == b'</1/0>,</5>;ver="1.1",</5/0>'
    v11 = RegisterParams("dev", 60, "1.1", "UT", True, None, objects)
    assert register_query(v11) == ["ep=dev", "lt=60", "lwm2m=1.1", "b=UT", "Q"]
    assert register_payload(v11) == b"</1/0>,</5>;ver=1.1,</5/0>"


def test_update_query_and_payload() -> None:
    assert update_query(UpdateParams()) == []
    assert update_payload(UpdateParams()) == b""
    update = UpdateParams(lifetime=5, binding="S", queue_mode=True, objects=[Link("/3/0")])
    assert update_query(update, "1.0") == ["lt=5", "b=SQ"]
    assert update_query(update, "1.2") == ["lt=5", "b=S", "Q"]
    assert update_payload(update) == b"</3/0>"


# -- properties ------------------------------------------------------------------------

endpoints = st.text(
    alphabet=st.characters(exclude_categories=["Cs", "Cc"]), min_size=1, max_size=40
)
versions = st.sampled_from(["1.0", "1.1", "1.2"])
object_versions = st.sampled_from(["1.0", "1.1", "1.2", "2.0"])


@st.composite
def object_links(draw: st.DrawFn) -> list[Link]:
    tree = draw(
        st.dictionaries(
            st.integers(1, 65534).filter(lambda i: i != 21),
            st.sets(st.integers(0, 65534), max_size=3),
            max_size=5,
        )
    )
    links: list[Link] = []
    for object_id in sorted(tree):
        ver = draw(object_versions)
        if ver != "1.0" or not tree[object_id]:
            links.append(Link(f"/{object_id}", {"ver": ver} if ver != "1.0" else {}))
        links.extend(Link(f"/{object_id}/{i}") for i in sorted(tree[object_id]))
    return links


@st.composite
def register_params(draw: st.DrawFn) -> RegisterParams:
    version = draw(versions)
    if version == "1.0":
        b = draw(st.sampled_from(sorted({"U", "UQ", "S", "SQ", "US", "UQS"})))
        binding, queue = b.replace("Q", ""), "Q" in b
    else:
        letters = draw(st.lists(st.sampled_from("UTSN"), min_size=1, max_size=4, unique=True))
        binding, queue = "".join(letters), draw(st.booleans())
    formats = tuple(draw(st.lists(st.integers(0, 65535), max_size=3)))
    root = draw(st.sampled_from(["/", "/lwm2m", "/a/b"]))
    if formats:
        root = draw(st.sampled_from(["/", root]))
    return RegisterParams(
        endpoint=draw(endpoints),
        lifetime=draw(st.integers(0, MAX_LIFETIME)),
        lwm2m_version=version,
        binding=binding,
        queue_mode=queue,
        sms=draw(st.none() | st.from_regex(r"\+?[0-9]{1,15}", fullmatch=True)),
        objects=draw(object_links()),
        root_path=root,
        content_formats=formats,
    )


@settings(max_examples=150)
@given(register_params())
def test_register_build_then_parse_round_trips(params: RegisterParams) -> None:
    assert parse_register(register_query(params), register_payload(params)) == params


@settings(max_examples=300)
@given(
    st.lists(st.text(alphabet="eplt=wm2bsQ0123456789.UTSNx+", max_size=12), max_size=6),
    st.binary(max_size=80),
)
def test_garbage_requests_give_registration_errors_not_crashes(
    query: list[str], payload: bytes
) -> None:
    for parse in (parse_register, parse_update):
        try:
            parse(query, payload)
        except (RegistrationError, UnsupportedVersion):
            pass


@settings(max_examples=200)
@given(st.text(alphabet='</>;,="01359 rtoma.lwm2mctver', max_size=60))
def test_garbage_link_payloads_give_registration_errors(text: str) -> None:
    try:
        params = parse_register(["ep=d", "lwm2m=1.1"], text.encode())
    except RegistrationError:
        return
    assert all(link.target.startswith("/") for link in params.objects)
