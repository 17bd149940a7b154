import pytest
from torch import nn

import zoo
from zoo.core.registry import register_model

EXPECTED = ["himmelblau", "lenet", "linear-regression", "mnist-mlp", "tiny-fnn", "two-layer-net"]
PARAMETERS = {
    "two-layer-net": 1000 * 100 + 100 + 100 * 10 + 10,
    "mnist-mlp": 784 * 200 + 200 + 200 * 200 + 200 + 200 * 10 + 10,
    "lenet": (6 * 9 + 6) + (16 * 6 * 9 + 16) + (576 * 120 + 120) + (120 * 84 + 84) + (84 * 10 + 10),
    "tiny-fnn": 12,
    "linear-regression": 2,
}


def test_every_document_architecture_is_registered():
    assert zoo.list_models() == EXPECTED


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(zoo.UnknownModelError) as info:
        zoo.get_model("resnet50")
    assert "'resnet50'" in str(info.value)
    for name in EXPECTED:
        assert name in str(info.value)


def test_registering_a_name_twice_raises():
    spec = zoo.get_model("lenet")
    with pytest.raises(ValueError, match="already registered"):
        register_model(lambda: spec)


@pytest.mark.parametrize("name", EXPECTED)
def test_each_model_has_a_document_and_a_default_recipe(name):
    spec = zoo.get_model(name)
    assert {"document", "default"} <= set(spec.recipes)
    assert spec.recipe().__class__ is spec.recipes["default"].__class__
    assert isinstance(spec.build(spec.recipe("document")), nn.Module)


@pytest.mark.parametrize("name,count", PARAMETERS.items())
def test_parameter_counts_match_the_documents(name, count):
    spec = zoo.get_model(name)
    assert sum(p.numel() for p in spec.build(spec.recipe("document")).parameters()) == count


def test_unknown_recipe_lists_the_recipes():
    with pytest.raises(zoo.UnknownRecipeError, match="expected one of: document, default"):
        zoo.get_model("mnist-mlp").recipe("fast")


def test_only_himmelblau_is_not_exportable():
    assert [n for n in EXPECTED if not zoo.get_model(n).exportable] == ["himmelblau"]
