"""Property-based: requests drawn from /openapi.json's own schemas. The server accepts every request its schemas
call valid, answers nothing with a status its document does not list, and never answers 5xx."""

from __future__ import annotations

import json
import math

import jsonschema
import pytest
import serving
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serving import SERVED

from zoo.serve import create_app

pytestmark = pytest.mark.slow
served_weights = serving.served_weights
MAX_BATCH = 4
# derandomize: the examples come from each test's own source, so every run (and every machine) draws the same ones and
# a failure seen once is seen again; with database=None and a random seed each run drew different examples.
FUZZ = settings(max_examples=25, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
                                       HealthCheck.large_base_example])  # a digit is 784 numbers


def from_schema(schema: dict) -> st.SearchStrategy:
    """Values a JSON Schema calls valid, for the keywords /openapi.json uses (checked: an unknown one raises)."""
    known = {"type", "properties", "required", "additionalProperties", "items", "prefixItems", "minItems", "maxItems",
             "minimum", "maximum", "anyOf", "const", "description"}
    assert set(schema) <= known, set(schema) - known
    if "const" in schema:
        return st.just(schema["const"])
    if "anyOf" in schema:
        return st.one_of([from_schema(option) for option in schema["anyOf"]])
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties", {})
        required = {key: from_schema(properties[key]) for key in schema.get("required", [])}
        optional = {key: from_schema(value) for key, value in properties.items() if key not in required}
        return st.fixed_dictionaries(required, optional=optional)
    if kind == "array":
        head = [from_schema(item) for item in schema.get("prefixItems", [])]
        if schema.get("items") is False:
            return st.tuples(*head).map(list)
        low, high = schema.get("minItems", 0), schema.get("maxItems", 8)
        items = from_schema(schema["items"]) if "items" in schema else st.integers()
        return st.tuples(*head).flatmap(
            lambda start: st.lists(items, min_size=max(0, low - len(start)), max_size=max(0, high - len(start))).map(
                lambda rest: [*start, *rest]
            )
        )
    if kind == "integer":
        return st.integers(schema.get("minimum"), schema.get("maximum", 10_000))
    if kind == "number":
        return st.floats(
            schema.get("minimum"), schema.get("maximum"), allow_nan=False, allow_infinity=False
        ) | st.integers(int(max(schema.get("minimum", -1e6), -1e6)), int(min(schema.get("maximum", 1e6), 1e6)))
    if kind == "boolean":
        return st.booleans()
    if kind == "string":
        return st.text(max_size=8)
    raise AssertionError(f"no strategy for {schema}")


@pytest.fixture(scope="module")
def client(served_weights):
    return create_app({"WEIGHTS_DIR": str(served_weights), "MAX_BATCH": MAX_BATCH, "POLL_SECONDS": 0}).test_client()


@pytest.fixture(scope="module")
def document(client) -> dict:
    return client.get("/openapi.json").get_json()


def body_schema(document: dict, path: str) -> dict:
    return document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]


def statuses(document: dict, path: str, method: str) -> set[int]:
    return {int(code) for code in document["paths"][path][method]["responses"]}


def resolved(document: dict, node):
    """`node` with every local $ref (#/components/...) replaced by what it names."""
    if isinstance(node, dict):
        if set(node) == {"$ref"}:
            target = document
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            return resolved(document, target)
        return {key: resolved(document, value) for key, value in node.items()}
    if isinstance(node, list):
        return [resolved(document, item) for item in node]
    return node


def check_documented(document: dict, path: str, method: str, response) -> None:
    """The response's status is one the document lists for the route, and its JSON body fits that status's schema."""
    responses = document["paths"][path][method]["responses"]
    assert str(response.status_code) in responses, (response.status_code, response.get_data(as_text=True)[:300])
    content = responses[str(response.status_code)].get("content", {})
    if "application/json" in content:
        assert response.mimetype == "application/json", response.mimetype
        schema = resolved(document, content["application/json"]["schema"])
        jsonschema.Draft202012Validator(schema).validate(response.get_json())


def test_check_documented_refuses_an_answer_that_breaks_its_schema(client, document):
    """The check itself can fail: an error body without "error", or a prediction without its version."""

    class Answer:
        def __init__(self, status: int, body) -> None:
            self.status_code, self.mimetype, self._body = status, "application/json", body

        def get_json(self):
            return self._body

        def get_data(self, as_text: bool = False) -> str:
            return json.dumps(self._body)

    path = "/v1/models/linear-regression/predict"
    check_documented(document, path, "post", Answer(400, {"error": "expected x"}))
    check_documented(document, path, "post", Answer(200, {"model": "linear-regression", "version": 2,
                                                          "backend": "onnx", "y": 1.0}))
    with pytest.raises(jsonschema.ValidationError):
        check_documented(document, path, "post", Answer(400, {"message": "expected x"}))
    with pytest.raises(jsonschema.ValidationError):
        check_documented(document, path, "post", Answer(200, {"model": "linear-regression", "y": 1.0}))
    with pytest.raises(AssertionError):
        check_documented(document, path, "post", Answer(418, {"error": "teapot"}))


# These response checks found that a v2 image tensor may hold any finite float32 by its schema, but values far
# outside the 0-1 pixels the model takes (3.99e37 among them) overflow its logits to NaN, answered as null where the
# response schema said number. The response schema now says an output value may be null (JSON has no NaN), so the
# answers are checked against what is documented; bounding such inputs instead is left open.
V2_MODELS = SERVED


def versions(client, name: str) -> list[int]:
    return [v["version"] for v in client.get(f"/v1/models/{name}").get_json()["versions"]]


@pytest.mark.parametrize("name", SERVED)
def test_every_v1_body_the_schema_calls_valid_is_answered(client, document, name):
    path = f"/v1/models/{name}/predict"
    schema = body_schema(document, path)

    @FUZZ
    @given(body=from_schema(schema))
    def check(body):
        response = client.post(path, json=body)
        assert response.status_code == 200, (body, response.get_json())
        check_documented(document, path, "post", response)
        answer = response.get_json()
        assert answer["model"] == name and answer["version"] == versions(client, name)[-1]

    check()


def v2_bodies(document: dict, name: str) -> st.SearchStrategy:
    """v2 bodies from the schema's own parts: one of its tensors (one per batch size), with as many data values as
    that tensor's flat form holds."""
    tensors = body_schema(document, f"/v2/models/{name}/infer")["properties"]["inputs"]["items"]["anyOf"]

    def body(tensor: dict) -> st.SearchStrategy:
        flat = tensor["properties"]["data"]["anyOf"][0]
        values = st.lists(from_schema(flat["items"]), min_size=flat["minItems"], max_size=flat["maxItems"])
        return st.fixed_dictionaries(
            {
                "id": st.text(max_size=8),
                "inputs": values.map(
                    lambda data: [
                        {
                            "name": tensor["properties"]["name"]["const"],
                            "datatype": "FP32",
                            "shape": tensor["properties"]["shape"]["const"],
                            "data": data,
                        }
                    ]
                ),
            }
        )

    return st.sampled_from(tensors).flatmap(body)


@pytest.mark.parametrize("name", V2_MODELS)
def test_every_v2_body_the_schema_calls_valid_is_answered(client, document, name):
    path = f"/v2/models/{name}/infer"
    validator = jsonschema.Draft202012Validator(body_schema(document, path))

    @FUZZ
    @given(body=v2_bodies(document, name))
    def check(body):
        validator.validate(body)  # the schema calls it valid...
        response = client.post(path, json=body)  # ...so the server must answer it
        assert response.status_code == 200, response.get_json()
        check_documented(document, path, "post", response)
        (tensor,), (output,) = body["inputs"], response.get_json()["outputs"]  # one answer row per input row
        assert output["shape"][0] == tensor["shape"][0] and len(output["data"]) == math.prod(output["shape"])
        assert response.get_json().get("id") == body["id"]

    check()


@pytest.mark.parametrize("name", SERVED)
def test_any_version_number_is_answered_or_not_found(client, document, name):
    served = versions(client, name)

    @FUZZ
    @given(
        version=from_schema(
            document["paths"][f"/v2/models/{name}/versions/{{version}}"]["get"]["parameters"][0]["schema"]
        )
    )
    def check(version):
        response = client.get(f"/v2/models/{name}/versions/{version}")
        assert response.status_code == (200 if version in served else 404)
        check_documented(document, f"/v2/models/{name}/versions/{{version}}", "get", response)

    check()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
MEDIA = st.sampled_from(["application/json", "image/png", "text/plain", "multipart/form-data", ""])


@pytest.mark.parametrize(
    "path",
    [f"/v1/models/{name}/predict" for name in SERVED]
    + [f"/v2/models/{name}/infer" for name in SERVED]
    + [f"/v1/models/{name}/versions/{{version}}/predict" for name in SERVED],
)
def test_any_request_gets_a_documented_status_and_never_a_5xx(client, document, path):
    documented = statuses(document, path, "post")

    @FUZZ
    @given(
        body=JSON,
        media=MEDIA,
        version=st.integers(-2, 5).map(str) | st.text(max_size=4),
        encoding=st.sampled_from([None, "gzip", "identity"]),
    )
    def check(body, media, version, encoding):
        headers = {"Content-Encoding": encoding} if encoding else {}
        target = path.replace("{version}", version or "1")
        response = client.post(target, data=json.dumps(body), content_type=media or None, headers=headers)
        assert response.status_code < 500, response.get_json()
        if "{version}" not in path or version.isdigit():  # other segments are not this path at all
            assert response.status_code in documented, (response.status_code, response.get_json())
            check_documented(document, path, "post", response)

    check()


# Where a v2 body can be type-confused, and what can be put there: any JSON value, or an out-of-range one.
V2_FIELDS = [
    ("parameters",),
    ("id",),
    ("outputs",),
    ("outputs", 0),
    ("outputs", 0, "parameters"),
    ("outputs", 0, "parameters", "binary_data"),
    ("parameters", "binary_data_output"),
    ("inputs",),
    ("inputs", 0),
    ("inputs", 0, "name"),
    ("inputs", 0, "datatype"),
    ("inputs", 0, "shape"),
    ("inputs", 0, "shape", 0),
    ("inputs", 0, "data"),
    ("inputs", 0, "data", 0),
    ("inputs", 0, "parameters"),
    ("inputs", 0, "parameters", "binary_data_size"),
]
OUT_OF_RANGE = st.sampled_from(
    [
        3.5e38,
        -3.5e38,
        1e308,
        2**64,
        -(2**63),
        2**32,
        -1,
        0,
        [1] * 9,
        [2**32, 2**32],
        [10**30],
        "",
        "١",
        "²",
        "FP32",
        "FP64",
        {"binary_data": 1},
        [[]],
        True,
    ]
)


def confused(body: dict, where: tuple, value) -> dict:
    """`body` with the value at `where` (keys and indexes, made as needed) replaced by `value`."""
    body = json.loads(json.dumps(body))
    node = body
    for key in where[:-1]:
        if isinstance(node, dict):
            node = node.setdefault(key, {} if isinstance(key, str) else [{"name": "logits"}])
        elif isinstance(node, list) and isinstance(key, int) and key < len(node):
            node = node[key]
        else:
            return body
        if key == "outputs" and node == {}:
            node = body["outputs"] = [{"name": "logits"}]
    if isinstance(node, dict):
        node[where[-1]] = value
    elif isinstance(node, list) and isinstance(where[-1], int) and where[-1] < len(node):
        node[where[-1]] = value
    return body


@pytest.mark.parametrize("name", V2_MODELS)
def test_type_confused_and_out_of_range_v2_fields_get_a_documented_4xx(client, document, name):
    path = f"/v2/models/{name}/infer"
    documented = statuses(document, path, "post")

    @settings(FUZZ, max_examples=60)
    @given(body=v2_bodies(document, name), where=st.sampled_from(V2_FIELDS), value=JSON | OUT_OF_RANGE)
    def check(body, where, value):
        response = client.post(path, json=confused(body, where, value))
        assert response.status_code < 500, (where, value, response.get_json())
        assert response.status_code in documented, (response.status_code, response.get_json())
        check_documented(document, path, "post", response)

    check()
