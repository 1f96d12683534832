"""The object model and the DM operations without sockets (instances, tree, attributes)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fotakit.client import LwM2MObject, ObjectInstance, SimpleInstance
from fotakit.client.attributes import AttributeStore
from fotakit.client.tree import ObjectTree, parse_execute_args
from fotakit.lwm2m.attributes import NotificationAttributes
from fotakit.lwm2m.errors import BadRequest, MethodNotAllowed, NotFound
from fotakit.lwm2m.model import EMPTY_INSTANCE, ObjectDef, Operations, ResourceDef, ResourceType
from fotakit.lwm2m.path import Path

OBJ = ObjectDef(
    9000,
    "model test",
    multiple=True,
    resources={
        0: ResourceDef(0, "v", Operations.RW, ResourceType.INTEGER),
        1: ResourceDef(1, "m", Operations.RW, ResourceType.STRING, multiple=True),
        2: ResourceDef(2, "ro", Operations.R, ResourceType.STRING),
        3: ResourceDef(3, "x", Operations.E, ResourceType.NONE),
    },
)


def make_tree() -> tuple[ObjectTree, SimpleInstance, list[Path]]:
    changes: list[Path] = []
    instance = SimpleInstance({0: 1, 1: {0: "a"}, 2: "ro"}, {3: lambda args: None})
    obj = LwM2MObject(OBJ, {0: instance}, factory=lambda i: SimpleInstance({}))
    obj._set_listener(changes.append)
    return ObjectTree([obj]), instance, changes


def test_simple_instance_reports_changes_only_when_the_value_changes():
    _, instance, changes = make_tree()
    instance.set(0, 1)
    assert changes == []
    instance.set(0, 2)
    assert changes == [Path(9000, 0, 0)]


def test_partial_write_merges_and_replace_drops_resource_instances():
    tree, instance, _ = make_tree()
    tree.write(Path(9000, 0), {Path(9000, 0, 1, 4): "d"}, replace=False)
    assert instance.values[1] == {0: "a", 4: "d"}
    tree.write(Path(9000, 0, 1), {Path(9000, 0, 1, 9): "z"}, replace=True)
    assert instance.values[1] == {9: "z"}
    tree.write(Path(9000, 0, 1, 2), {Path(9000, 0, 1, 2): "y"}, replace=True)
    assert instance.values[1] == {9: "z", 2: "y"}, "a resource-instance write keeps siblings"


def test_read_of_instance_skips_executable_resources():
    tree, _, _ = make_tree()
    content = tree.read(Path(9000, 0))
    assert content == {Path(9000, 0, 0): 1, Path(9000, 0, 1, 0): "a", Path(9000, 0, 2): "ro"}


def test_read_of_an_empty_instance_is_the_empty_marker():
    tree, _, _ = make_tree()
    created = tree.create(Path(9000), {})
    assert created == Path(9000, 1)
    assert tree.read(created) == {created: EMPTY_INSTANCE}


@pytest.mark.parametrize(
    ("path", "content", "error"),
    [
        (Path(9000, 0, 2), {Path(9000, 0, 2): "x"}, MethodNotAllowed),
        (Path(9000, 0, 0), {Path(9000, 0, 0, 1): 3}, BadRequest),
        (Path(9000, 0, 1), {Path(9000, 0, 1): "x"}, BadRequest),
        (Path(9000, 0, 0), {}, BadRequest),
        (Path(9000, 0), {Path(9000, 0, 7): 1}, NotFound),
        (Path(9000, 5), {Path(9000, 5, 0): 1}, NotFound),
        (Path(9000), {Path(9000, 0, 0): 1}, MethodNotAllowed),
        (Path(9000, 0, 0), {Path(9001, 0, 0): 1}, BadRequest),
    ],
)
def test_write_refusals_change_nothing(path, content, error):
    tree, instance, _ = make_tree()
    before = dict(instance.values)
    with pytest.raises(error):
        tree.write(path, content, replace=True)
    assert instance.values == before


def test_execute_needs_an_executable_resource():
    tree, _, _ = make_tree()
    assert tree.executable(Path(9000, 0, 3)) is not None
    with pytest.raises(MethodNotAllowed):
        tree.executable(Path(9000, 0, 0))
    with pytest.raises(MethodNotAllowed):
        tree.executable(Path(9000, 0))


def test_base_instance_refuses_everything_precisely():
    instance = ObjectInstance()
    with pytest.raises(NotFound):
        instance.read(0)
    with pytest.raises(MethodNotAllowed):
        instance.write(0, 1, True)
    with pytest.raises(MethodNotAllowed):
        instance.execute(0, None)


def test_single_instance_object_refuses_a_second_instance():
    single = ObjectDef(9001, "single", multiple=False)
    obj = LwM2MObject(single, {0: SimpleInstance()})
    with pytest.raises(BadRequest):
        obj.add_instance(1, SimpleInstance())


@pytest.mark.parametrize("args", ["0", "0,1", "0='abc'", "1='x',2,3=''", "9='a b'"])
def test_valid_execute_arguments_pass(args):
    assert parse_execute_args(args.encode()) == args


@pytest.mark.parametrize("args", [b"a", b"0=", b"0='x", b"10", b"0,,1", b"\xff", b"0='a'b"])
def test_malformed_execute_arguments_are_bad_request(args):
    with pytest.raises(BadRequest):
        parse_execute_args(args)


@given(st.binary(max_size=40))
def test_execute_arguments_never_crash(payload):
    try:
        result = parse_execute_args(payload)
    except BadRequest:
        return
    assert result is None or result.encode() == payload


def test_effective_attributes_inherit_and_the_specific_level_wins():
    store = AttributeStore(lambda: NotificationAttributes(pmax=300))
    store.write(Path(3), NotificationAttributes(pmin=10))
    store.write(Path(3, 0), NotificationAttributes(pmax=60))
    store.write(Path(3, 0, 9), NotificationAttributes(pmin=100, gt=5.0))
    assert store.effective(Path(3, 0, 1)) == NotificationAttributes(pmin=10, pmax=60)
    # pmin=100 at the resource conflicts with the inherited pmax=60: the resource wins and
    # pmax is dropped (not taken from a level further up)
    assert store.effective(Path(3, 0, 9)) == NotificationAttributes(pmin=100, gt=5.0)
    assert store.effective(Path(4)) == NotificationAttributes(pmax=300)


def test_removing_attributes_and_dropping_a_subtree():
    store = AttributeStore()
    store.write(Path(3, 0), NotificationAttributes(pmin=1, pmax=5))
    store.write(Path(3, 0), NotificationAttributes.parse_query(["pmin"]))
    assert store.at(Path(3, 0)) == NotificationAttributes(pmax=5)
    store.write(Path(3, 0, 1), NotificationAttributes(pmin=2))
    store.drop_under(Path(3, 0))
    assert store.all == {}


names = st.sampled_from(["pmin", "pmax", "gt", "lt", "st"])


@given(st.lists(st.tuples(st.integers(1, 3), names, st.integers(0, 100)), max_size=8))
def test_effective_attributes_are_always_valid(writes):
    store = AttributeStore()
    for depth, name, value in writes:
        path = Path(*[3, 0, 1][:depth])
        try:
            store.write(path, NotificationAttributes.parse_query([f"{name}={value}"]))
        except BadRequest:
            continue
    for depth in (1, 2, 3):
        effective = store.effective(Path(*[3, 0, 1][:depth]))
        if effective.pmin is not None and effective.pmax is not None:
            assert effective.pmin <= effective.pmax
