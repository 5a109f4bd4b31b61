"""The one aiohttp user: the client's HTTP routes (``/stt``, ``/tts/bytes``, ``/access-token``).

One :class:`HTTPClient` per ``AsyncCartesia``: it opens its aiohttp session on first use,
sends the client's headers, and turns a refused request or a failed connection into this
package's typed errors (through :mod:`._translate`). ``client.close()`` closes it. Failed
requests are retried by the client's one policy (:class:`~.protocol.retry.RetryPolicy`: 429,
5xx and connection failures, with backoff and the server's ``Retry-After``), within the call's
``timeout``, which bounds every attempt and wait together.

TLS and proxies (see :mod:`._network`): the client's ``ssl`` context goes to each
``https://`` request (``ssl=`` of ``ClientSession.request``; aiohttp's default, ``True``,
verifies against the system trust store); the proxy is resolved per request and passed as
``proxy=``, its credentials as a ``Proxy-Authorization`` header (``proxy_headers=``, what
aiohttp 3.14 recommends over the deprecated ``proxy_auth=``).

Event loops. An aiohttp session belongs to the loop it was made on, so the client keeps one
pool per loop (:class:`_Pool`), made on that loop's first request. Each pool closes itself when
its loop shuts down: an async generator first iterated on the loop, whose ``finally`` closes
the session, is closed by ``loop.shutdown_asyncgens()`` (what ``asyncio.run`` and
``asyncio.Runner`` do before closing the loop). So a client reused under a second
``asyncio.run`` gets a new pool, and the old one was closed while its loop could still do it.

Forks. A forked child inherits the parent's pools, but not the threads or loops that serve
them, and shares their sockets and the loop's selector with the parent: closing a pool there
would unregister the parent's sockets. The child abandons them (:meth:`_Pool.abandon`: no I/O,
nothing left that would warn or close on collection) and makes new ones as it needs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
import warnings
import weakref
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from ._network import ProxyOption, SSLOption, http_proxy, proxy_authorization, ssl_for
from ._redact import Secrets, proxy_secrets, secrets_in
from ._telemetry import Hub, request_record
from ._translate import http_error, proxy_status_error, status_error
from ._version import __version__
from .errors import CartesiaSTTError
from .protocol.commands import build_headers
from .protocol.retry import RetryPolicy, transient

__all__ = ["HTTPClient"]

logger = logging.getLogger("cartesia_stt_async")


class _Connector(aiohttp.TCPConnector):
    """aiohttp's connector, which a forked child can drop without touching the parent's
    sockets (aiohttp's own ``__del__`` would close them, unregistering them from the shared
    selector)."""

    abandoned = False

    def __del__(self, _warnings: Any = warnings) -> None:
        if not self.abandoned:
            super().__del__(_warnings)


class _Pool:
    """One event loop's aiohttp session; closed when that loop shuts down (see the module
    docstring), by :meth:`close`, or abandoned in a forked child."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.loop = loop
        self._connector = _Connector()
        self.session = aiohttp.ClientSession(
            connector=self._connector, timeout=aiohttp.ClientTimeout(total=timeout)
        )
        self._abandoned = False
        self._keeper = self._keep()

    async def _keep(self) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            if not self._abandoned:
                await self.session.close()

    async def start(self) -> None:
        """Tie the pool to the running loop's shutdown (its first iteration registers the
        keeper with the loop)."""
        await anext(self._keeper)

    async def close(self) -> None:
        """Close the session (at once if its loop is already closed: nothing is left to do
        on it)."""
        await self._keeper.aclose()

    def abandon(self) -> None:
        """In a forked child: let go of the parent's pool without any I/O."""
        self._abandoned = self._connector.abandoned = True
        self.session.detach()  # the session counts as closed: no "Unclosed" warning
        closing = self._keeper.aclose()  # finishes at once: the keeper has nothing to await
        with contextlib.suppress(StopIteration):
            closing.send(None)


_CLIENTS: weakref.WeakSet[HTTPClient] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for client in list(_CLIENTS):
        pools, client._pools = client._pools, {}
        for pool in pools.values():
            pool.abandon()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_after_fork_in_child)


class _Call:
    """What one :meth:`HTTPClient.post` call did, for its observers' record."""

    __slots__ = ("attempts", "headers", "loop", "path", "start", "started_at", "status")

    def __init__(self, path: str, loop: asyncio.AbstractEventLoop) -> None:
        self.path = path
        self.loop = loop
        self.start = loop.time()
        self.started_at = time.time()
        self.attempts = 0
        self.status: int | None = None
        self.headers: CIMultiDictProxy[str] | None = None

    def request_id(self, secrets: Secrets) -> str:
        """The last answer's ``X-Request-Id`` (``""`` if none), redacted."""
        found = self.headers.get("X-Request-Id") if self.headers is not None else None
        return secrets.optional(found) or ""


class HTTPClient:
    """POSTs JSON to the API's HTTP routes.

    Args:
        api_key: Sent as ``Authorization: Bearer``.
        base_url: The HTTP base URL.
        cartesia_version: The ``cartesia-version`` header.
        default_headers: Extra headers for every request.
        timeout: Seconds for a whole request.
        ssl: An :class:`ssl.SSLContext` for ``https://`` requests, or ``None``/``False``
            (aiohttp's default verification; ``False`` is only ever accepted for plain
            URLs, checked by the client).
        proxy: A proxy URL, ``None`` (from the environment) or ``False`` (none).
        secrets: The client's registry of credentials to redact.
        retry: How failed requests are retried (default :class:`RetryPolicy`'s).
        hub: The client's observers (told about every call), or ``None``.
    """

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str,
        cartesia_version: str,
        default_headers: Mapping[str, str],
        timeout: float = 60.0,
        ssl: SSLOption = None,
        proxy: ProxyOption = None,
        secrets: Secrets | None = None,
        retry: RetryPolicy | None = None,
        hub: Hub | None = None,
    ) -> None:
        self._hub = hub
        self._base = base_url.rstrip("/")
        self._headers = build_headers(
            api_key=api_key,
            cartesia_version=cartesia_version,
            user_agent=f"cartesia-stt-async/{__version__}",
            extra_headers=dict(default_headers),
        )
        self.secrets = (
            secrets
            if secrets is not None
            else Secrets.for_client(api_key, default_headers, proxy or None)
        )
        self.timeout = timeout
        self.retry = retry if retry is not None else RetryPolicy()
        self._ssl = ssl
        self._proxy = proxy
        self._pools: dict[asyncio.AbstractEventLoop, _Pool] = {}
        _CLIENTS.add(self)

    def url(self, path: str) -> str:
        """The shown (redacted) URL of ``path``."""
        return self.secrets.url(self._base + path)

    async def post(
        self,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        accept: str,
        form: Callable[[], aiohttp.FormData] | None = None,
        replayable: Callable[[], bool] | None = None,
        query: Sequence[tuple[str, str]] = (),
        extra_headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        audio_seconds: Callable[[bytes], float | None] | None = None,
    ) -> tuple[bytes, CIMultiDictProxy[str]]:
        """POST ``body`` as JSON (or ``form()`` as multipart) to ``path``, retrying failures
        the client's :class:`~.protocol.retry.RetryPolicy` allows; return the answer's body
        and headers.

        Args:
            path: The route (``/tts/bytes``).
            body: The JSON body.
            accept: The ``Accept`` header.
            form: Makes the multipart body, once per attempt (instead of ``body``).
            replayable: After a failed attempt: whether ``form()`` can make the same body
                again (a non-seekable file already partly read cannot); default yes.
            query: Query string pairs.
            extra_headers: More headers for this request (they win over the client's).
            timeout: Seconds for the whole call, retries and their waits included; default
                the client's ``timeout``.
            audio_seconds: Reads the audio duration from a successful answer, for the
                observers' record (called only when someone observes).

        Raises:
            APIStatusError: The server answered with a status >= 400 (typed by status, with
                the server's message, code and request id), after any retries.
            APIConnectionError: The server could not be reached (``APITimeoutError`` when the
                call's time ran out, ``TLSError`` when its certificate did not verify,
                ``ProxyError`` when the proxy refused or could not be reached).
        """
        secrets = self.secrets
        if query or extra_headers:
            secrets = secrets.copy()  # this call's credentials, redacted from its errors
            secrets.add(*secrets_in(query, extra_headers))
        limit = self.timeout if timeout is None else timeout
        hub = self._hub
        call = _Call(path, asyncio.get_running_loop())
        if hub is None or not hub.wants("request_finished"):
            return await self._post(
                call, body, accept, form, replayable, query, extra_headers, limit, secrets
            )
        error: BaseException | None = None
        content: bytes | None = None
        try:
            content, headers = await self._post(
                call, body, accept, form, replayable, query, extra_headers, limit, secrets
            )
            return content, headers
        except BaseException as exc:
            error = exc
            raise
        finally:
            seconds = None
            if content is not None and audio_seconds is not None:
                with contextlib.suppress(Exception):  # a bad answer raises to the caller
                    seconds = audio_seconds(content)
            hub.emit(
                "request_finished",
                request_record(
                    path=path,
                    url=secrets.url(self._base + path),
                    status=call.status,
                    error=error,
                    request_id=call.request_id(secrets),
                    started_at=call.started_at,
                    duration=call.loop.time() - call.start,
                    attempts=call.attempts,
                    audio_seconds=seconds,
                ),
            )

    async def _post(
        self,
        call: _Call,
        body: Mapping[str, Any] | None,
        accept: str,
        form: Callable[[], aiohttp.FormData] | None,
        replayable: Callable[[], bool] | None,
        query: Sequence[tuple[str, str]],
        extra_headers: Mapping[str, str] | None,
        limit: float,
        secrets: Secrets,
    ) -> tuple[bytes, CIMultiDictProxy[str]]:
        """The attempts of :meth:`post`, each noted in ``call``."""
        path, loop = call.path, call.loop
        deadline = call.start + limit
        attempt = 0
        while True:
            attempt += 1
            call.attempts = attempt
            remaining = max(deadline - loop.time(), 0.001)
            data = form() if form is not None else None
            status, headers, outcome = await self._attempt(
                path, body, data, accept, query, extra_headers, remaining, secrets
            )
            call.status, call.headers = status, headers
            if isinstance(outcome, bytes):
                assert headers is not None  # an answer always has them
                return outcome, headers
            if not transient(outcome):
                raise outcome
            wait = self.retry.decide(
                attempt,
                status=status,
                headers=headers if headers is not None else {},
                remaining=deadline - loop.time(),
                jitter=random.random(),
                now=time.time(),
                replayable=replayable() if replayable is not None else True,
            )
            if wait is None:
                raise outcome
            logger.debug(
                "%s failed (%s); retry %d in %.2f s",
                path,
                status or type(outcome).__name__,
                attempt,
                wait,
                extra={"cartesia_path": path, "cartesia_request_id": call.request_id(secrets)},
            )
            await asyncio.sleep(wait)

    async def _attempt(
        self,
        path: str,
        body: Mapping[str, Any] | None,
        data: aiohttp.FormData | None,
        accept: str,
        query: Sequence[tuple[str, str]],
        extra_headers: Mapping[str, str] | None,
        timeout: float,
        secrets: Secrets,
    ) -> tuple[int | None, CIMultiDictProxy[str] | None, bytes | CartesiaSTTError]:
        """One request: ``(status, headers, body)``, or ``(status, headers, error)`` for a
        refusal or a failure (``None`` status and headers when no answer came)."""
        session = await self._session()
        headers = {**self._headers, "Accept": accept, **(extra_headers or {})}
        url = self._base + path
        proxy = http_proxy(url, self._proxy)
        proxy_url, proxy_headers = self._proxy_args(proxy)
        if proxy_headers and not url.startswith("https:"):
            # A forwarding proxy (plain http://, no tunnel): aiohttp sends proxy_headers with
            # a CONNECT only, so the credentials go with the request itself.
            headers.update(proxy_headers)
        try:
            async with session.post(
                url,
                json=body if data is None else None,
                data=data,
                params=list(query) or None,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
                # True: aiohttp's default (verify against the system's trust store).
                ssl=ssl_for(url, self._ssl) or True,
                proxy=proxy_url,
                proxy_headers=proxy_headers,
                # Never followed: aiohttp drops Authorization across origins but re-sends every
                # other header (an X-API-Key in default_headers) to the host a server names.
                allow_redirects=False,
            ) as response:
                content = await response.read()
        except Exception as exc:
            error = http_error(exc, secrets.url(url), secrets, timeout, proxy)
            if error is None:
                raise
        else:
            error = None
        if error is not None:
            return None, None, error  # outside the except block: the foreign one is not kept
        if response.status == 407 and proxy is not None and not url.startswith("https:"):
            # A forwarding proxy (plain http://, no tunnel) refuses in the response itself.
            refused = proxy_status_error(proxy, response.status, response.reason or "", secrets)
            return response.status, response.headers, refused
        if response.status >= 300:  # a redirect included (not followed: see above)
            return (
                response.status,
                response.headers,
                status_error(
                    response.status, response.reason or "", content, response.headers, secrets
                ),
            )
        return response.status, response.headers, content

    def _proxy_args(self, proxy: str | None) -> tuple[URL | None, dict[str, str] | None]:
        """``proxy=`` and ``proxy_headers=`` for aiohttp: the URL without its credentials,
        which go in a ``Proxy-Authorization`` header."""
        if proxy is None:
            return None, None
        self.secrets.add(*proxy_secrets(proxy))
        parsed = URL(proxy)
        auth = proxy_authorization(proxy)  # the rule the socket's tunnel follows too
        if auth is None:
            return parsed, None
        self.secrets.add(auth)
        return parsed.with_user(None), {"Proxy-Authorization": auth}

    async def _session(self) -> aiohttp.ClientSession:
        """The running loop's session, made on its first request."""
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None or pool.session.closed:
            await self._release_closed_loops()
            pool = self._pools[loop] = _Pool(loop, self.timeout)
            await pool.start()
        return pool.session

    async def _release_closed_loops(self) -> None:
        for loop in [loop for loop in self._pools if loop.is_closed()]:
            pool = self._pools.pop(loop, None)
            if pool is not None:
                await pool.close()

    async def aclose(self) -> None:
        """Close the running loop's connection pool (a later request opens a new one), and
        forget those of closed loops. A pool of another loop that is still open closes when
        that loop shuts down."""
        pool = self._pools.pop(asyncio.get_running_loop(), None)
        if pool is not None:
            await pool.close()
        await self._release_closed_loops()
