import pytest

import zoo
from zoo.core.recipes import parse_assignments


def recipe(name, **overrides):
    return zoo.get_model(name).recipe("document", overrides)


def test_string_overrides_are_coerced_to_the_field_types():
    r = recipe("tiny-fnn", lr="0.5", epochs="20", activation="relu", optimizer="adam", init="none")
    assert (r.lr, r.epochs, r.activation, r.optimizer, r.init) == (0.5, 20, "relu", "adam", "none")


def test_bool_and_tuple_fields():
    assert recipe("mnist-mlp", final_relu="false").final_relu is False
    assert recipe("himmelblau", starts="[[1, 2], [3, 4]]").starts == ((1.0, 2.0), (3.0, 4.0))


def test_unknown_key_lists_the_valid_keys():
    with pytest.raises(zoo.InvalidOverrideError) as info:
        recipe("tiny-fnn", momentun=0.9)
    message = str(info.value)
    assert "unknown recipe key 'momentun'" in message
    for key in ("epochs", "lr", "batch_size", "seed", "activation (one of sigmoid, relu)", "loss (one of mse, bce)"):
        assert key in message


@pytest.mark.parametrize(
    "key,value,expected",
    [
        ("lr", "fast", "expected float, got 'fast'"),
        ("epochs", "2.5", "expected int, got '2.5'"),
        ("activation", "tanh", "expected one of sigmoid, relu, got 'tanh'"),
        ("lr", "nan", "expected float, got 'nan'"),
        ("lr", "-1", "expected a number in"),
        ("epochs", "0", "expected a number in"),
    ],
)
def test_bad_values_say_what_was_expected_and_what_came(key, value, expected):
    with pytest.raises(zoo.InvalidOverrideError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        recipe("tiny-fnn", **{key: value})


def test_bce_needs_sigmoid_outputs():
    with pytest.raises(zoo.InvalidOverrideError, match="loss=bce needs outputs in"):
        recipe("tiny-fnn", loss="bce", activation="relu")


def test_himmelblau_starts_must_be_pairs():
    with pytest.raises(zoo.InvalidOverrideError, match="starts"):
        recipe("himmelblau", starts="[[1, 2, 3]]")


def test_assignments_parse_and_reject_malformed_pairs():
    assert parse_assignments(["lr=0.1", " loss = bce "]) == {"lr": "0.1", "loss": "bce"}
    with pytest.raises(zoo.InvalidOverrideError, match="expected key=value"):
        parse_assignments(["lr0.1"])
