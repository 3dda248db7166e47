"""The Registry: names set at registration, building by name, one option check up the hierarchy."""

from __future__ import annotations

from typing import Any

import pytest

from dml_core.data import DATASETS, build_dataset
from dml_core.losses import LOSSES
from dml_core.miners import MINERS
from dml_core.models import ARCHS
from dml_core.registry import Registry, accepted_options
from dml_core.samplers import SAMPLERS


class Base:
    def __init__(self, size: int, *, seed: int = 0) -> None:
        self.size, self.seed = size, seed


class Middle(Base):
    def __init__(self, *args: Any, width: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.width = width


class Leaf(Middle):
    def __init__(self, *args: Any, depth: int = 2, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.depth = depth


class Closed(Base):
    """Takes no **kwargs: its parent's ``seed`` is not an option of this class."""

    def __init__(self, size: int, *, scale: float = 1.0) -> None:
        super().__init__(size)
        self.scale = scale


class Open:
    """Takes any keyword and checks it itself: the registry leaves it alone."""

    def __init__(self, **anything: Any) -> None:
        self.anything = anything


@pytest.fixture
def things() -> Registry:
    registry = Registry("thing")
    for name, cls in {"leaf": Leaf, "closed": Closed, "open": Open}.items():
        registry.register(name)(cls)
    return registry


def test_registration_sets_the_name(things):
    assert (Leaf.name, Closed.name, Open.name) == ("leaf", "closed", "open")
    with pytest.raises(ValueError, match="thing 'leaf' is registered twice"):
        things.register("leaf")(Base)


def test_options_are_collected_up_the_hierarchy(things):
    assert accepted_options(Leaf) == ["depth", "seed", "size", "width"]
    assert accepted_options(Leaf, num_positional=1) == ["depth", "seed", "width"]
    assert accepted_options(Leaf, fixed=frozenset({"seed"})) == ["depth", "size", "width"]
    assert accepted_options(Closed, num_positional=1) == ["scale"]
    assert accepted_options(Open) is None
    leaf = things.build("leaf", 5, seed=3, options={"width": 4, "depth": 6})
    assert (leaf.size, leaf.seed, leaf.width, leaf.depth) == (5, 3, 4, 6)
    assert things.build("open", options={"colour": "red"}).anything == {"colour": "red"}


def test_unknown_name_and_option_are_one_line(things):
    with pytest.raises(ValueError) as error:
        things.build("lef", 5)
    assert str(error.value) == "unknown thing 'lef'; valid names: closed, leaf, open"
    with pytest.raises(ValueError) as error:
        things.build("leaf", 5, seed=1, options={"dept": 1, "colour": 2})
    assert (
        str(error.value) == "thing 'leaf' has no option colour, dept; valid options: depth, width"
    )
    with pytest.raises(ValueError, match=r"'closed' has no option seed; valid options: scale$"):
        things.build("closed", 5, options={"seed": 1})


def test_every_family_registers_by_name():
    for registry in (LOSSES, MINERS, SAMPLERS, DATASETS):
        assert registry, registry.kind
        for name, cls in registry.items():
            assert cls.name == name
    assert sorted(ARCHS) == ["mlp", "resnet18", "resnet50", "small_cnn"]


def test_datasets_check_options_through_the_registry():
    dataset = build_dataset("toy_diagonal", split="test", seed=1)
    assert dataset.name == "toy_diagonal" and len(dataset) > 0
    with pytest.raises(ValueError) as error:
        build_dataset("toy_diagonal", split="test", sed=1)
    assert str(error.value) == "dataset 'toy_diagonal' has no option sed; valid options: seed"
