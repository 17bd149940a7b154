"""/openapi.json: an OpenAPI 3 description of every route, with the served models' names filled in."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, jsonify

from zoo.serve.models import served_models
from zoo.serve.payloads import FORMS
from zoo.registry import get_model

openapi = Blueprint("openapi", __name__)

ERROR = {"description": "bad request: a JSON body {\"error\": \"what was expected, what came\"}",
         "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
ERRORS = {"400": ERROR, "404": {**ERROR, "description": "unknown model or version"},
          "413": {**ERROR, "description": "body over the size limit"},
          "415": {**ERROR, "description": "unsupported Content-Type"}}
JSON_OK = lambda description, schema: {
    "200": {"description": description, "content": {"application/json": {"schema": schema}}}}
OBJECT = {"type": "object"}


def _model_param(names: list[str]) -> dict[str, Any]:
    return {"name": "name", "in": "path", "required": True, "schema": {"type": "string", "enum": names}}


HTML_OK = {"200": {"description": "the model card as an HTML page", "content": {"text/html": {}}}}
CARD_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
             "description": "any registered model with a stored version, served or not"}
VERSION_PARAM = {"name": "version", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[0-9]+$"}}


def predict_body(names: list[str]) -> dict[str, Any]:
    """The /v1 predict request body: each distinct JSON schema of the models' forms, naming the models that take it,
    and the other media types their forms read."""
    takers: dict[str, list[str]] = {}
    schemas: dict[str, dict[str, Any]] = {}
    media: dict[str, Any] = {}
    for name in names:
        form = FORMS[get_model(name).interface.form]
        schema = form.json_schema(get_model(name))
        key = json.dumps(schema, sort_keys=True)
        schemas.setdefault(key, schema)
        takers.setdefault(key, []).append(name)
        media.update(form.other_media)
    one_of = [{**schema, "description": f"{', '.join(takers[key])}: {schema['description']}"}
              for key, schema in schemas.items()]
    return {"required": True, "content": {"application/json": {"schema": {"oneOf": one_of}}, **media}}


PREDICTION = {"type": "object", "properties": {
    "model": {"type": "string"}, "version": {"type": "integer"}, "backend": {"type": "string"},
    "digit": {"type": "integer"}, "probabilities": {"type": "array", "items": {"type": "number"}, "minItems": 10, "maxItems": 10},
    "predictions": {"type": "array", "items": OBJECT},
}, "additionalProperties": {"description": "values models: the output tensor's name (e.g. y), one value or a list"}}
TENSOR = {"type": "object", "required": ["name", "shape", "datatype"], "properties": {
    "name": {"type": "string"}, "shape": {"type": "array", "items": {"type": "integer"}},
    "datatype": {"type": "string", "enum": ["FP32"]}, "data": {"type": "array", "items": {}},
    "parameters": OBJECT}}


def describe(names: list[str]) -> dict[str, Any]:
    """The OpenAPI 3 document for a server answering for `names`."""
    model = _model_param(names)
    pinned = [model, VERSION_PARAM]
    infer = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["inputs"], "properties": {
            "id": {"type": "string"}, "inputs": {"type": "array", "items": TENSOR},
            "outputs": {"type": "array", "items": OBJECT}, "parameters": OBJECT}}}}},
        "responses": {**JSON_OK("outputs", {"type": "object", "properties": {
            "model_name": {"type": "string"}, "model_version": {"type": "string"}, "id": {"type": "string"},
            "outputs": {"type": "array", "items": TENSOR}}}), **ERRORS}}
    predict = {"requestBody": predict_body(names), "responses": {**JSON_OK("prediction", PREDICTION), **ERRORS}}
    status = lambda summary: {"get": {"summary": summary, "responses": JSON_OK("status", OBJECT)}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "zoo", "version": "1", "description": "Digit prediction and regression inference for the "
                 "zoo's models; /v2 follows the Open Inference Protocol (KServe / Triton HTTP)."},
        "paths": {
            "/v1/models": {"get": {"summary": "served models with their versions", "responses": JSON_OK("models", OBJECT)}},
            "/v1/models/{name}": {"get": {"summary": "a model's metadata", "parameters": [model],
                                          "responses": {**JSON_OK("metadata", OBJECT), **ERRORS}}},
            "/v1/models/{name}/predict": {"post": {"summary": "predict with the latest version", "parameters": [model], **predict}},
            "/v1/models/{name}/versions/{version}/predict": {"post": {"summary": "predict with a pinned version",
                                                                      "parameters": pinned, **predict}},
            "/v2": status("server metadata"),
            "/v2/health/live": status("liveness"),
            "/v2/health/ready": status("readiness: every model loaded and warmed up (503 before)"),
            "/healthz": status("liveness alias"),
            "/readyz": status("readiness alias"),
            "/v2/models/{name}": {"get": {"summary": "v2 model metadata", "parameters": [model],
                                          "responses": {**JSON_OK("metadata", OBJECT), **ERRORS}}},
            "/v2/models/{name}/versions/{version}": {"get": {"summary": "v2 model metadata", "parameters": pinned,
                                                             "responses": {**JSON_OK("metadata", OBJECT), **ERRORS}}},
            "/v2/models/{name}/ready": {"get": {"summary": "model readiness", "parameters": [model],
                                                "responses": {**JSON_OK("ready", OBJECT), **ERRORS}}},
            "/v2/models/{name}/versions/{version}/ready": {"get": {"summary": "model readiness", "parameters": pinned,
                                                                   "responses": {**JSON_OK("ready", OBJECT), **ERRORS}}},
            "/v2/models/{name}/infer": {"post": {"summary": "v2 inference, latest version", "parameters": [model], **infer}},
            "/v2/models/{name}/versions/{version}/infer": {"post": {"summary": "v2 inference, pinned version",
                                                                    "parameters": pinned, **infer}},
            "/models/{name}": {"get": {"summary": "the model card of the latest version (HTML)", "parameters": [CARD_NAME],
                                       "responses": {**HTML_OK, "404": ERRORS["404"]}}},
            "/models/{name}/versions/{version}": {"get": {
                "summary": "the model card of a version (HTML)", "parameters": [CARD_NAME, VERSION_PARAM],
                "responses": {**HTML_OK, "404": ERRORS["404"]}}},
            "/models/{name}/versions/{version}/{file}": {"get": {
                "summary": "a figure of a version's model card, from its folder only",
                "parameters": [CARD_NAME, VERSION_PARAM, {"name": "file", "in": "path", "required": True,
                                                          "schema": {"type": "string", "pattern": "^[^/]+\\.png$"}}],
                "responses": {"200": {"description": "the figure", "content": {"image/png": {}}},
                              "404": ERRORS["404"]}}},
        },
        "components": {"schemas": {"Error": {"type": "object", "required": ["error"],
                                             "properties": {"error": {"type": "string"}}}}},
    }


@openapi.get("/openapi.json")
def openapi_json():
    return jsonify(describe(served_models().names()))
