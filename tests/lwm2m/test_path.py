"""Path: parsing, validation, navigation and ordering (TS Core 1.1.1 §6.1)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fotakit.lwm2m.path import MAX_ID, ROOT, InvalidPath, Path

ids = st.integers(min_value=0, max_value=MAX_ID)
paths = st.lists(ids, max_size=4).map(lambda parts: Path(*parts))


@pytest.mark.parametrize(
    ("text", "depth", "ids"),
    [
        ("/", 0, ()),
        ("/5", 1, (5,)),
        ("/5/0", 2, (5, 0)),
        ("/5/0/3", 3, (5, 0, 3)),
        ("/5/0/8/1", 4, (5, 0, 8, 1)),
        (f"/{MAX_ID}/0", 2, (MAX_ID, 0)),
    ],
)
def test_parse_gives_depth_and_ids(text: str, depth: int, ids: tuple[int, ...]) -> None:
    path = Path.parse(text)
    assert path.depth == depth
    assert path.ids == ids
    assert str(path) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "5/0/3",  # no leading slash
        "/5/",  # trailing slash
        "//5",
        "/5//3",
        "/05",  # leading zero: not a canonical ID
        "/-1",
        "/+1",
        "/ 5",
        "/5/0/3/1/2",  # depth 5
        f"/{MAX_ID + 1}",  # 65535 is reserved
        "/99999",
        "/123456",
        "/a",
        "/\uff15",  # full-width digit five
    ],
)
def test_parse_refuses_malformed_text(text: str) -> None:
    with pytest.raises(InvalidPath):
        Path.parse(text)


def test_parse_refuses_non_text() -> None:
    with pytest.raises(InvalidPath):
        Path.parse(5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "parts",
    [(3, None, 1), (None, 0), (-1,), (MAX_ID + 1,), (True,), ("5",), (1.0,)],
)
def test_constructor_refuses_invalid_components(parts: tuple[object, ...]) -> None:
    with pytest.raises(InvalidPath):
        Path(*parts)  # type: ignore[arg-type]


def test_navigation_between_parent_and_child() -> None:
    state = Path.parse("/5/0/3")
    assert state.parent() == Path(5, 0)
    assert Path(5, 0).child(3) == state
    assert state.resource_path() == state
    assert Path(5, 0, 8, 1).resource_path() == Path(5, 0, 8)
    assert state.startswith(Path(5)) and state.startswith(ROOT) and state.startswith(state)
    assert not state.startswith(Path(5, 1))
    assert Path(3).is_object and Path(3, 0).is_object_instance and state.is_resource
    assert Path(5, 0, 8, 1).is_resource_instance and ROOT.is_root
    assert state.segments == ("5", "0", "3")


def test_navigation_refuses_beyond_the_tree() -> None:
    with pytest.raises(InvalidPath):
        ROOT.parent()
    with pytest.raises(InvalidPath):
        Path(5, 0, 8, 1).child(0)
    with pytest.raises(InvalidPath):
        Path(5, 0).resource_path()


def test_paths_of_different_depths_sort_as_a_tree() -> None:
    # Regression: the dataclass ordering compared None with int and raised TypeError.
    unsorted = [Path(5, 0, 3), Path(3), ROOT, Path(5, 0), Path(3, 0, 1), Path(5)]
    assert sorted(unsorted) == [ROOT, Path(3), Path(3, 0, 1), Path(5), Path(5, 0), Path(5, 0, 3)]
    assert Path(3) < Path(3, 0) <= Path(3, 0) and Path(4) > Path(3, 9) >= Path(3, 9)


@given(paths)
def test_text_round_trip(path: Path) -> None:
    assert Path.parse(str(path)) == path
    assert Path.from_segments(path.segments) == path
    assert hash(Path.parse(str(path))) == hash(path)


@given(paths, paths)
def test_order_matches_id_tuples(a: Path, b: Path) -> None:
    assert (a < b) == (a.ids < b.ids)
    assert (a <= b) == (a.ids <= b.ids)


@given(st.text(max_size=40))
def test_garbage_is_a_path_or_invalid_path(text: str) -> None:
    try:
        path = Path.parse(text)
    except InvalidPath:
        return
    assert str(path) == text


@given(st.lists(st.text(alphabet="0123456789/-+ a", max_size=6), max_size=6))
def test_garbage_segments_are_a_path_or_invalid_path(segments: list[str]) -> None:
    try:
        path = Path.from_segments(segments)
    except InvalidPath:
        return
    assert list(path.segments) == segments
