"""The generic registry behind the four extension points (objectives, judges, samplers, tasks)."""

import pytest

from selm.errors import ConfigError
from selm.registry import Registry


def test_register_add_get_available():
    shapes = Registry("shape", key="geometry.shape")

    @shapes.register
    class Square:
        name = "square"

    class Circle:
        pass

    shapes.add("circle", Circle)
    shapes.add("round", Circle)  # an alias
    assert shapes.get("square") is Square and shapes.get("round") is Circle
    assert shapes.available() == ["circle", "round", "square"]
    assert "circle" in shapes and "oval" not in shapes
    with pytest.raises(ConfigError) as err:
        shapes.get("oval")
    assert str(err.value) == "geometry.shape: unknown shape 'oval'; available: circle, round, square"
    assert Registry("shape").unknown("oval") == "unknown shape 'oval'; available: none"


def test_the_name_attribute_is_configurable_and_required():
    kinds = Registry("kind", attribute="kind")

    class Nameless:
        kind = ""

    with pytest.raises(ValueError, match="Nameless has no kind"):
        kinds.register(Nameless)


def test_registering_the_same_class_again_is_harmless_another_class_is_an_error():
    animals = Registry("animal")

    class Cat:
        name = "cat"

    class OtherCat:
        name = "cat"

    animals.register(Cat)
    animals.register(Cat)
    with pytest.raises(ValueError, match="animal 'cat' is registered twice"):
        animals.register(OtherCat)
    assert animals.get("cat") is Cat


def test_temporary_registrations_are_forgotten_even_after_an_error():
    animals = Registry("animal")
    animals.add("cat", int)
    with pytest.raises(RuntimeError), animals.temporary_registrations():
        animals.add("dog", str)
        assert animals.available() == ["cat", "dog"]
        raise RuntimeError
    assert animals.available() == ["cat"]
