"""Compatibility modules: the ``tilde.resources.*`` paths code written for earlier SDK releases imports from.

Each module re-exports the classes of one resource family from the distributions that define them, so
``from tilde.resources.repositories import Repository`` and ``tilde.Repository`` are the same class. New code
can import from ``tilde`` (``tilde.Client``, ``tilde.Repository``) and ``tilde.models``.

What is not carried over: these modules are not where the code runs, so patching a name in them (for example
``tilde.resources.shell.ws_connect``) does not change what the SDK does. Test against a real server instead
(``tilde.server.LocalServer``), or pass ``http_client=`` an ``httpx.Client`` on a mock transport. Patching
``tilde.resources.sessions.time.sleep`` still works, because it replaces ``time.sleep`` itself.
"""

__all__: list[str] = []
