"""Errors as HTTP answers, without a server: one field path for both faces, each face's
shape and status (server/http_errors.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from locallama.api.openai import ChatCompletionRequest
from locallama.errors import InvalidRequest, ModelNotFound, PullError, ServerBusy
from locallama.server.http_errors import (
    error_response,
    field_path,
    validation_error_response,
)


def invalid(model: type[BaseModel], data: Any) -> RequestValidationError:
    """What FastAPI raises for a body that does not fit ``model``."""
    try:
        model.model_validate(data)
    except ValidationError as exc:
        return RequestValidationError([{**e, "loc": ("body", *e["loc"])}
                                       for e in exc.errors()])
    raise AssertionError("the body fits")


def answer(exc: RequestValidationError, openai: bool) -> tuple[int, dict[str, Any]]:
    response = validation_error_response(exc, openai=openai)
    return response.status_code, json.loads(response.body)


@pytest.mark.parametrize("loc, path", [
    (("body", "messages", 0, "role"), "messages[0].role"),
    (("body", "messages", 0, "content", "list[dict[str,any]]", 1), "messages[0].content[1]"),
    (("body", "tool_choice", "NamedToolChoice", "function", "name"), "tool_choice.function.name"),
    (("body", "tool_choice", "literal['none','auto','required']"), "tool_choice"),
    (("body", "input", "list[list[constrained-int]]", 0, 2), "input[0][2]"),
    (("body", "keep_alive", "float"), "keep_alive"),
    (("body", "files", "Model.gguf"), "files.Model.gguf"),  # a key is not a union's tag
    (("body",), None),
])
def test_a_field_path_leaves_out_the_body_and_the_union_tags(loc, path):
    assert field_path(loc) == path


def test_both_faces_name_the_same_field():
    exc = invalid(ChatCompletionRequest, {"model": "tiny",
                                          "messages": [{"role": "wizard", "content": "hi"}]})
    status, ollama = answer(exc, openai=False)
    assert status == 400 and ollama["code"] == "invalid_request"
    assert ollama["error"].startswith("invalid messages[0].role: input should be 'system'")
    status, openai = answer(exc, openai=True)
    assert status == 400 and openai["error"]["param"] == "messages[0].role"
    assert openai["error"]["type"] == "invalid_request_error"
    assert openai["error"]["code"] == "invalid_value"


def test_a_missing_field():
    exc = invalid(ChatCompletionRequest, {"messages": [{"role": "user", "content": "hi"}]})
    assert answer(exc, openai=False)[1]["error"] == "model is required"
    error = answer(exc, openai=True)[1]["error"]
    assert error["param"] == "model" and error["message"] == "model: Field required"


class _Union(BaseModel):
    value: str | list[int]


def test_the_ollama_face_says_every_reason_a_union_gave():
    message = answer(invalid(_Union, {"value": 5}), openai=False)[1]["error"]
    assert message == ("invalid value: input should be a valid string or input should be "
                       "a valid list")


def test_the_openai_face_names_the_deepest_field():
    error = answer(invalid(_Union, {"value": [1, "x"]}), openai=True)[1]["error"]
    assert error["param"] == "value[1]"


def test_a_body_that_is_not_json():
    exc = RequestValidationError([{"type": "json_invalid", "loc": ("body", 1),
                                   "msg": "JSON decode error",
                                   "ctx": {"error": "Expecting value"}}])
    assert answer(exc, openai=False) == (400, {
        "error": "invalid JSON in the request body: Expecting value",
        "code": "invalid_request"})
    status, body = answer(exc, openai=True)
    assert status == 400 and body["error"]["code"] == "invalid_json"
    assert body["error"]["message"] == "the request body is not valid JSON (Expecting value)"


def test_a_body_that_is_not_an_object():
    exc = invalid(ChatCompletionRequest, [1, 2])
    assert answer(exc, openai=False)[1]["error"] == "the request body must be a JSON object"
    assert answer(exc, openai=True)[1]["error"]["message"].startswith(
        "the request body must be a JSON object")


def test_typed_errors_in_each_shape():
    response = error_response(InvalidRequest("bad", "think"), openai=False)
    assert response.status_code == 400
    assert json.loads(response.body) == {"error": "bad", "code": "invalid_request",
                                         "param": "think"}
    response = error_response(ModelNotFound("nope"), openai=True)
    assert response.status_code == 404
    assert json.loads(response.body)["error"]["param"] == "model"


def test_a_failed_pull_is_a_bad_gateway_only_to_openai():
    assert error_response(PullError("gone"), openai=False).status_code == 500
    response = error_response(PullError("gone"), openai=True)
    assert response.status_code == 502
    assert json.loads(response.body)["error"]["type"] == "server_error"


def test_a_busy_server_says_when_to_retry_on_both_faces():
    busy = ServerBusy("the queue is full", retry_after=3)
    for openai in (False, True):
        response = error_response(busy, openai=openai)
        assert response.status_code == 503 and response.headers["Retry-After"] == "3"
