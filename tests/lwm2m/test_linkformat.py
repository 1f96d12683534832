"""CoRE link format (RFC 6690) for Register payloads and Discover answers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fotakit.lwm2m.attributes import NotificationAttributes
from fotakit.lwm2m.errors import BadRequest, NotFound
from fotakit.lwm2m.linkformat import (
    Link,
    LinkFormatError,
    discover_links,
    format_links,
    links_for_objects,
    parse_links,
)
from fotakit.lwm2m.path import InvalidPath, Path


def test_parses_a_register_payload_with_quoted_and_bare_values() -> None:
    links = parse_links('</>;rt="oma.lwm2m";ct=110, </1/0>,</3/0>,</5>;ver=1.1,</5/0>')
    assert links == [
        Link("/", {"rt": "oma.lwm2m", "ct": "110"}),
        Link("/1/0"),
        Link("/3/0"),
        Link("/5", {"ver": "1.1"}),
        Link("/5/0"),
    ]


def test_quoted_and_bare_values_mean_the_same() -> None:
    assert parse_links('</5>;ver="1.0"') == parse_links("</5>;ver=1.0")


def test_value_less_attributes_and_multi_value_ct() -> None:
    [link] = parse_links('</>;obs;ct="60 110";rt="oma.lwm2m"')
    assert link.params == {"obs": None, "ct": "60 110", "rt": "oma.lwm2m"}


def test_attribute_names_fold_to_lower_case_and_first_repeat_wins() -> None:
    [link] = parse_links("</3/0>;PMIN=5;pmin=7")
    assert link.params == {"pmin": "5"}


@pytest.mark.parametrize("text", ["", "   ", "\n"])
def test_empty_text_is_no_links(text: str) -> None:
    assert parse_links(text) == []


@pytest.mark.parametrize(
    "text", ["garbage", "</a>;x=a,b", '</a>;x="open', "<>", "</a>,junk", "</a", "/1/0"]
)
def test_malformed_text_raises_link_format_error_with_4_00(text: str) -> None:
    with pytest.raises(LinkFormatError) as info:
        parse_links(text)
    assert str(info.value.code) == "4.00 Bad Request"


def test_formats_numbers_bare_and_relation_types_quoted() -> None:
    links = [
        Link("/", {"rt": "oma.lwm2m", "ct": "110"}),
        Link("/5", {"ver": "1.2"}),
        Link("/3/0/7", {"dim": "8", "pmin": "10", "gt": "-2.5", "ct": "60 110", "obs": None}),
        Link("/x", {"title": 'say "hi" \\o/'}),
    ]
    assert format_links(links) == (
        '</>;rt="oma.lwm2m";ct=110,</5>;ver=1.2,'
        '</3/0/7>;dim=8;pmin=10;gt=-2.5;ct="60 110";obs,'
        '</x>;title="say \\"hi\\" \\\\o/"'
    )
    assert parse_links(format_links(links)) == links


def test_quoted_forces_quotes_for_lwm2m_1_0_ver() -> None:
    assert str(Link("/5", {"ver": "1.0"}, frozenset({"ver"}))) == '</5>;ver="1.0"'


@pytest.mark.parametrize(
    "link",
    [Link(""), Link("/a>b"), Link(" /a"), Link("/a", {"bad name": "1"}), Link("/a", {"": None})],
)
def test_unwritable_links_are_refused(link: Link) -> None:
    with pytest.raises(ValueError):
        format_links([link])


def test_link_path_strips_the_root_path() -> None:
    assert Link("/lwm2m/3/0").path("/lwm2m") == Path(3, 0)
    assert Link("/lwm2m").path("/lwm2m/") == Path()
    assert Link("/3/0").path() == Path(3, 0)
    with pytest.raises(LinkFormatError):
        Link("/other/3/0").path("/lwm2m")
    with pytest.raises(InvalidPath):
        Link("/lwm2m3/0").path()


def test_register_payload_for_a_1_1_client() -> None:
    links = links_for_objects(
        {0: [0], 1: [0], 3: [0], 5: [0], 21: [0], 4: []},
        versions={5: "1.2", 3: "1.0"},
        lwm2m_version="1.1",
    )
    # Security (0) and OSCORE (21) are never registered; /4 has no instance.
    assert format_links(links) == "</1/0>,</3/0>,</4>,</5>;ver=1.2,</5/0>"


def test_register_payload_for_a_1_0_client_quotes_ver() -> None:
    links = links_for_objects({1: [0], 5: [0]}, versions={5: "1.1"}, lwm2m_version="1.0")
    assert format_links(links) == '</1/0>,</5>;ver="1.1",</5/0>'


def test_register_payload_with_root_path_and_content_formats() -> None:
    links = links_for_objects({3: [0], 3303: [1, 0, 1]}, root_path="/lwm2m", content_formats=[112])
    assert format_links(links) == (
        '</lwm2m>;rt="oma.lwm2m";ct=112,</lwm2m/3/0>,</lwm2m/3303/0>,</lwm2m/3303/1>'
    )
    several = links_for_objects({3: [0]}, content_formats=[60, 110])
    assert format_links(several) == '</>;rt="oma.lwm2m";ct="60 110",</3/0>'


TREE = {0: {0: None, 3: None, 6: 2, 11: 1}}


def test_discover_on_an_object_lists_instances_and_resources_with_attributes() -> None:
    attrs = {
        Path(3): NotificationAttributes(pmin=10),
        Path(3, 0, 6): NotificationAttributes(gt=50.0, lt=42.2),
    }
    answer = format_links(discover_links(Path(3), TREE, attrs))
    assert answer == (
        "</3>;pmin=10,</3/0>,</3/0/0>,</3/0/3>,</3/0/6>;dim=2;gt=50;lt=42.2,</3/0/11>;dim=1"
    )


def test_discover_on_an_instance_and_a_resource() -> None:
    assert format_links(discover_links(Path(3, 0), TREE)) == (
        "</3/0>,</3/0/0>,</3/0/3>,</3/0/6>;dim=2,</3/0/11>;dim=1"
    )
    attrs = {Path(3, 0, 6): NotificationAttributes(pmax=60)}
    assert format_links(discover_links(Path(3, 0, 6), TREE, attrs)) == "</3/0/6>;dim=2;pmax=60"


@pytest.mark.parametrize("target", [Path(3, 1), Path(3, 1, 0), Path(3, 0, 9)])
def test_discover_on_missing_targets_is_not_found(target: Path) -> None:
    with pytest.raises(NotFound):
        discover_links(target, TREE)


@pytest.mark.parametrize("target", [Path(), Path(3, 0, 6, 0)])
def test_discover_on_root_or_resource_instance_is_a_bad_request(target: Path) -> None:
    with pytest.raises(BadRequest):
        discover_links(target, TREE)


targets = (
    st.text(
        alphabet=st.characters(exclude_characters="<>", exclude_categories=["Cs"]),
        min_size=1,
        max_size=15,
    )
    .map(str.strip)
    .filter(bool)
)
param_names = st.from_regex(r"[a-z0-9_.\-]{1,8}", fullmatch=True)
param_values = st.one_of(
    st.none(),
    st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=15),
)
links = st.builds(Link, targets, st.dictionaries(param_names, param_values, max_size=4))


@given(st.lists(links, max_size=5))
def test_format_then_parse_round_trips(sample: list[Link]) -> None:
    assert parse_links(format_links(sample)) == sample


@settings(max_examples=300)
@given(st.text(alphabet='<>/;,="\\ abc019', max_size=60))
def test_garbage_gives_links_or_link_format_error(text: str) -> None:
    try:
        result = parse_links(text)
    except LinkFormatError:
        return
    assert all(isinstance(link.target, str) and link.target for link in result)
