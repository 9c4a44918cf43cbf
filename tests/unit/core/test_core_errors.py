from __future__ import annotations

import pickle

import httpx
import pytest

from tilde.core import errors
from tilde.core._transport import error_from_response
from tilde.core.errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    CommandError,
    ConfigurationError,
    ConflictError,
    ForbiddenError,
    GoneError,
    LockedError,
    NotFoundError,
    PreconditionFailedError,
    SandboxError,
    SerializationError,
    ServerError,
    TildeError,
    TransportError,
    api_error_for_status,
)


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, ForbiddenError),
        (404, NotFoundError),
        (409, ConflictError),
        (410, GoneError),
        (412, PreconditionFailedError),
        (423, LockedError),
        (500, ServerError),
        (501, ServerError),
        (502, ServerError),
        (503, ServerError),
        (599, ServerError),
        (405, APIError),
        (416, APIError),
        (429, errors.RateLimitError),
        (302, APIError),
    ],
)
def test_every_status_maps_to_its_class(status: int, cls: type[APIError]) -> None:
    error = api_error_for_status(status, message="m")
    assert type(error) is cls
    assert isinstance(error, APIError)
    assert isinstance(error, TildeError)
    assert error.status_code == status


def test_tree_shape() -> None:
    for cls in (ConfigurationError, TransportError, SerializationError, SandboxError, APIError):
        assert cls.__bases__ == (TildeError,)
    assert CommandError.__bases__ == (SandboxError,)
    assert TildeError.__bases__ == (Exception,)
    for name in errors.__all__:
        assert name in errors.__doc__ or name == "api_error_for_status"


def test_str_with_method_url_and_details() -> None:
    error = api_error_for_status(
        404,
        message="no such repo",
        code="not_found",
        request_id="req-1",
        method="GET",
        url="http://x/api/v1/r",
    )
    assert str(error) == "GET http://x/api/v1/r -> 404: no such repo [code=not_found request_id=req-1]"


def test_str_lists_only_non_empty_details_and_omits_prefix_without_method() -> None:
    assert str(APIError(418, message="teapot")) == "418: teapot"
    assert str(APIError(409, message="dup", request_id="r")) == "409: dup [request_id=r]"
    assert str(APIError(409, message="dup", code="c")) == "409: dup [code=c]"


def test_attributes_and_truncation() -> None:
    error = APIError(
        500, message="m", code="c", request_id="r", method="PUT", url="u", response_text="x" * 900
    )
    assert (error.status_code, error.message, error.code, error.request_id, error.method, error.url) == (
        500,
        "m",
        "c",
        "r",
        "PUT",
        "u",
    )
    assert error.response_text == "x" * 500


def test_api_errors_survive_pickling() -> None:
    error = api_error_for_status(423, message="locked", code="connector_disabled", method="GET", url="u")
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is LockedError
    assert str(clone) == str(error)
    assert clone.code == "connector_disabled"


def test_transport_error_keeps_cause() -> None:
    cause = OSError("refused")
    error = TransportError("GET x failed", cause=cause)
    assert error.cause is cause
    assert error.__cause__ is cause
    assert str(error) == "GET x failed"
    assert TransportError("plain").cause is None


def test_command_error_fields() -> None:
    result = object()
    error = CommandError("Command 'ls' exited with code 2", result=result, command="ls")
    assert error.result is result
    assert error.command == "ls"
    assert isinstance(error, SandboxError)
    assert CommandError("x").result is None
    assert CommandError("x").command == ""


def _response(status: int, **kwargs: object) -> httpx.Response:
    return httpx.Response(status, request=httpx.Request("DELETE", "http://h/api/v1/thing"), **kwargs)  # type: ignore[arg-type]


def test_json_error_body() -> None:
    error = error_from_response(
        _response(409, json={"message": "exists", "code": "conflict", "request_id": "q"})
    )
    assert isinstance(error, ConflictError)
    assert (error.message, error.code, error.request_id, error.method) == (
        "exists",
        "conflict",
        "q",
        "DELETE",
    )
    assert error.url == "http://h/api/v1/thing"
    assert '"message"' in error.response_text


def test_non_json_error_body_uses_first_200_chars() -> None:
    text = "<html>" + "y" * 1000
    error = error_from_response(_response(502, text=text))
    assert isinstance(error, ServerError)
    assert error.message == text[:200]
    assert error.response_text == text[:500]
    assert error.code == ""


@pytest.mark.parametrize("body", [b"[1, 2]", b'"just a string"', b"{not json", b"null"])
def test_malformed_or_non_object_bodies(body: bytes) -> None:
    error = error_from_response(_response(400, content=body))
    assert isinstance(error, BadRequestError)
    assert error.message == body.decode()[:200]


def test_empty_body_falls_back_to_reason_phrase() -> None:
    error = error_from_response(_response(404))
    assert error.message == "Not Found"


def test_object_without_message_keeps_the_text() -> None:
    error = error_from_response(_response(400, json={"detail": "bad"}))
    assert "detail" in error.message
