"""The asynchronous client: a thin awaiting driver around the shared request core."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from types import TracebackType
from typing import Any, TypeVar

import httpx
import pluggy

from tilde.core._async_support import SleepFunction, default_sleep, fetch_token, pool_lock
from tilde.core._base import ClientBase, pick_injected
from tilde.core._streams import wrap_async_stream
from tilde.core._transport import (
    UPLOAD_TIMEOUT,
    CloseResponse,
    Exchange,
    NeedToken,
    ReadBody,
    Send,
    Sleep,
    json_object,
    optional_json_object,
)
from tilde.core.credentials import CredentialsProvider
from tilde.core.errors import ClientClosedError
from tilde.core.pagination import (
    AsyncPaginatedIterator,
    PageResult,
    check_amount,
    check_page_size,
    page_query,
    parse_page,
)

__all__ = ["AsyncClient"]

T = TypeVar("T")


class AsyncClient(ClientBase):
    """A connection to a Tilde server, for asyncio or trio code.

    Settings not passed here are resolved from the environment and ``~/.tilde/config.yaml`` (see
    `tilde.core.config`); a missing API key only fails at the first request, with `ConfigurationError`.

    Every member that sends a request is a coroutine; `_paginate` and `_list_once` return
    `AsyncPaginatedIterator`. Credentials providers that only have a blocking ``get_token`` are called in a
    worker thread when they might do I/O; one with an ``async def aget_token()`` is awaited instead.

    Args:
        endpoint_url: The server root, e.g. ``https://tilde.run``.
        api_key: A static API key.
        default_sandbox_image: The image sandboxes use when none is named.
        credentials_provider: Supplies the token for every request; wins over every other source.
        extra_user_agent: Appended to the ``User-Agent`` after a space.
        http_client: An `httpx.AsyncClient` to send API requests with; used as is and never closed by this
            client.
        httpx_client: Alias of ``http_client``.
        timeout: Seconds (or an `httpx.Timeout`) per API call; default connect 5 s, read 60 s.
        max_retries: Retries after a connection failure, 429 or 502/503/504 (idempotent methods only, except
            failures to connect, which are retried for every method).
        plugin_manager: The plugin manager to take auth providers from; by default a fresh one from
            `tilde.core.plugins.make_plugin_manager`.

    A closed client (and every handle made from it) raises `ClientClosedError` on its next request.
    `with_options` gives a copy with other timeouts, retries or headers that shares this client's pools;
    `last_request_id` is the server's id of the last response, per thread or task.

    Example:
        ```python
        async with AsyncClient(api_key="tuk-...") as client:
            patient = client.with_options(timeout=120, max_retries=5)
            print(patient.last_request_id)
        ```

    """

    def __init__(
        self,
        *,
        endpoint_url: str | None = None,
        api_key: str | None = None,
        default_sandbox_image: str | None = None,
        credentials_provider: CredentialsProvider | None = None,
        extra_user_agent: str | None = None,
        http_client: httpx.AsyncClient | None = None,
        httpx_client: httpx.AsyncClient | None = None,
        timeout: float | httpx.Timeout | None = None,
        max_retries: int = 2,
        plugin_manager: pluggy.PluginManager | None = None,
    ) -> None:
        injected: httpx.AsyncClient | None = pick_injected(http_client, httpx_client)
        super().__init__(
            endpoint_url=endpoint_url,
            api_key=api_key,
            default_sandbox_image=default_sandbox_image,
            credentials_provider=credentials_provider,
            extra_user_agent=extra_user_agent,
            timeout=timeout,
            max_retries=max_retries,
            plugin_manager=plugin_manager,
            injected_http=injected is not None,
        )
        self._owns_http = injected is None
        self._http: httpx.AsyncClient = (
            injected
            if injected is not None
            else httpx.AsyncClient(
                base_url=self._config.base_url,
                timeout=self._timeout,
                follow_redirects=False,
                headers={"User-Agent": self._user_agent},
            )
        )
        self._upload_http_client: httpx.AsyncClient | None = None
        self._upload_lock = pool_lock()
        # Replaceable so tests can observe backoff without waiting.
        self._sleep: SleepFunction = default_sleep()

    # -- lifecycle ---------------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the connection pools this client made, and its credentials provider. Idempotent.

        An HTTP client passed in by the caller is left open. Later requests through this client, or through
        any handle made from it, raise `ClientClosedError`. On a copy made by `with_options` this releases
        nothing (the pools belong to the original) and only closes the copy.
        """
        if self._closed:
            return
        self._closed = True
        if self._parent is not None:
            return
        if self._owns_http:
            await self._http.aclose()
        if self._upload_http_client is not None and self._upload_http_client is not self._http:
            await self._upload_http_client.aclose()
        self._close_credentials_provider()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- credentials -------------------------------------------------------------------------------------

    async def _token(self) -> str:
        """Return the bearer token to send now (`ConfigurationError` when there is no token source)."""
        return await fetch_token(self._require_provider())

    _ensure_api_key = _token

    async def _auth_headers(self) -> dict[str, str]:
        """Return ``Authorization`` and ``User-Agent`` headers, for connections made outside `_request`."""
        self._ensure_open()
        return {"Authorization": f"Bearer {await self._token()}", "User-Agent": self._user_agent}

    # -- the driver --------------------------------------------------------------------------------------

    @property
    def _upload_http(self) -> httpx.AsyncClient:
        """The client for presigned URLs: separate pool and timeouts, never an Authorization header.

        When the caller injected an HTTP client, uploads go through it too (it may carry a proxy or a mock).
        A `with_options` copy uses its original's, so that closing the original closes it.
        """
        if self._parent is not None:
            parent_upload: httpx.AsyncClient = self._parent._upload_http  # type: ignore[attr-defined]
            return parent_upload
        upload = self._upload_http_client
        if upload is None:
            # Sync multipart uploads reach this from several worker threads at once: build exactly one pool.
            with self._upload_lock:
                upload = self._upload_http_client
                if upload is None:
                    upload = (
                        self._http
                        if not self._owns_http
                        else httpx.AsyncClient(timeout=UPLOAD_TIMEOUT, follow_redirects=False)
                    )
                    self._upload_http_client = upload
        return upload

    async def _drive(self, exchange: Exchange, http: httpx.AsyncClient) -> httpx.Response:
        """Perform the actions the request core yields until it returns a response or raises."""
        value: Any = None
        error: httpx.RequestError | None = None
        try:
            self._ensure_open()
            while True:
                try:
                    action = exchange.throw(error) if error is not None else exchange.send(value)
                except StopIteration as stop:
                    response: httpx.Response = stop.value
                    return response
                value, error = None, None
                if isinstance(action, NeedToken):
                    value = await self._token()
                elif isinstance(action, Send):
                    try:
                        value = await http.send(
                            action.request, stream=action.stream, follow_redirects=action.follow_redirects
                        )
                    except httpx.RequestError as exc:
                        error = exc
                    except RuntimeError as exc:
                        # httpx refuses requests on a closed pool with a bare RuntimeError.
                        if not http.is_closed:
                            raise
                        raise ClientClosedError(
                            "the HTTP client this Tilde client sends with has been closed; pass an open one "
                            "(http_client=) to a new client and take fresh handles from it"
                        ) from exc
                elif isinstance(action, ReadBody):
                    try:
                        await action.response.aread()
                    except httpx.RequestError as exc:
                        error = exc
                elif isinstance(action, CloseResponse):
                    await action.response.aclose()
                elif isinstance(action, Sleep):
                    await self._sleep(action.seconds)
        finally:
            exchange.close()

    # -- requests ----------------------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        json: Any = None,
        content: Any = None,
        headers: Mapping[str, str] | None = None,
        follow_redirects: bool = False,
        timeout: Any = None,
    ) -> httpx.Response:
        """Send an API request and return the successful response, body read.

        Args:
            method: HTTP method.
            path: Path under ``/api/v1`` (starting with ``/``) or an absolute URL.
            params: Query parameters (None values dropped).
            json: JSON body.
            content: Raw body.
            headers: Extra headers.
            follow_redirects: Follow 3xx (only object downloads do).
            timeout: Per-call timeout override.

        Returns:
            The 2xx response.

        Raises:
            ConfigurationError: No token source.
            TransportError: Network failure (after retries).
            APIError: Non-2xx status, as the subclass for that status.

        """
        exchange = self._core.exchange(
            self._http.build_request,
            method,
            path,
            params=params,
            json=json,
            content=content,
            headers=headers,
            follow_redirects=follow_redirects,
            timeout=timeout,
        )
        return await self._drive(exchange, self._http)

    @contextlib.asynccontextmanager
    async def _stream(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        headers: Mapping[str, str] | None = None,
        follow_redirects: bool = False,
    ) -> AsyncIterator[httpx.Response]:
        """Send a request and yield the open, unread response; errors are raised before yielding.

        Network failures while reading the body are raised as `TransportError`.
        """
        exchange = self._core.exchange(
            self._http.build_request,
            method,
            path,
            params=params,
            headers=headers,
            follow_redirects=follow_redirects,
            stream=True,
        )
        response = await self._drive(exchange, self._http)
        wrap_async_stream(response)
        try:
            yield response
        finally:
            await response.aclose()

    async def _get(self, path: str, *, params: Any = None) -> httpx.Response:
        """GET, returning the response (body read)."""
        return await self._request("GET", path, params=params)

    async def _get_json(self, path: str, *, params: Any = None) -> dict[str, Any]:
        """GET a JSON object (`SerializationError` for anything else)."""
        return json_object(await self._request("GET", path, params=params))

    async def _post_json(self, path: str, *, params: Any = None, json: Any = None) -> dict[str, Any] | None:
        """POST (JSON body if given); the JSON object answered, or None for 204 / an empty body."""
        return optional_json_object(await self._request("POST", path, params=params, json=json))

    async def _put_json(self, path: str, *, params: Any = None, json: Any = None) -> dict[str, Any] | None:
        """PUT (JSON body if given); the JSON object answered, or None for 204 / an empty body."""
        return optional_json_object(await self._request("PUT", path, params=params, json=json))

    async def _patch_json(self, path: str, *, params: Any = None, json: Any = None) -> dict[str, Any] | None:
        """PATCH (JSON body if given); the JSON object answered, or None for 204 / an empty body."""
        return optional_json_object(await self._request("PATCH", path, params=params, json=json))

    async def _delete(self, path: str, *, params: Any = None) -> None:
        """DELETE; the body is ignored."""
        await self._request("DELETE", path, params=params)

    async def _head(self, path: str, *, params: Any = None) -> httpx.Response:
        """HEAD, returning the response (redirects are not followed)."""
        return await self._request("HEAD", path, params=params)

    async def _presigned_put(
        self, url: str, content: Any, *, headers: Mapping[str, str] | None = None
    ) -> httpx.Response:
        """PUT bytes to a self-authorising URL (no Authorization header; upload timeouts).

        Args:
            url: The absolute presigned URL.
            content: Bytes, or an iterator of bytes (not retried once sent).
            headers: Extra headers; ``Content-Type`` defaults to ``application/octet-stream``.

        Returns:
            The 2xx response (read its ``ETag``).

        Raises:
            TransportError: Network failure or a non-2xx answer.

        """
        http = self._upload_http
        exchange = self._core.presigned_put(http.build_request, url, content, headers)
        return await self._drive(exchange, http)

    # -- lists -------------------------------------------------------------------------------------------

    def _paginate(
        self,
        path: str,
        parse: Callable[[dict[str, Any]], T],
        *,
        params: Mapping[str, Any] | None = None,
        amount: int | None = None,
        page_size: int | None = None,
        after: str | None = None,
    ) -> AsyncPaginatedIterator[T]:
        """Return a lazy iterator over a paginated list endpoint (CONTRACT §3).

        Args:
            path: The list endpoint.
            parse: Converts one item into the caller's type.
            params: Extra query parameters (filters).
            amount: Cap on the total number of items; 0 makes no request.
            page_size: Items per request (1 to 1000, default 100).
            after: Cursor to start after.

        Returns:
            The iterator; nothing is requested until the first item is needed.

        Raises:
            ValueError: Bad ``page_size`` or ``amount`` (raised now, before any request).

        """
        size = check_page_size(page_size)
        check_amount(amount)
        filters = dict(params or {})

        async def fetch(cursor: str | None, wire_size: int) -> PageResult[T]:
            query = page_query(filters, wire_size, cursor)
            return parse_page(await self._get_json(path, params=query), parse)

        return AsyncPaginatedIterator(fetch, limit=amount, after=after, page_size=size)

    def _list_once(
        self,
        path: str,
        parse: Callable[[dict[str, Any]], T],
        *,
        params: Mapping[str, Any] | None = None,
        amount: int | None = None,
    ) -> AsyncPaginatedIterator[T]:
        """Return a lazy iterator over a single-shot ``{"results": [...]}`` list (no paging parameters).

        Args:
            path: The list endpoint.
            parse: Converts one item into the caller's type.
            params: Query parameters (filters).
            amount: Cap on the number of items; 0 makes no request.

        Returns:
            The iterator.

        """
        check_amount(amount)

        async def fetch(cursor: str | None) -> PageResult[T]:
            page = parse_page(await self._get_json(path, params=params), parse)
            return PageResult(page.items)

        return AsyncPaginatedIterator(fetch, limit=amount)
