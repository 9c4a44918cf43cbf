"""Hook specifications of tilde-server (pluggy project name ``"tilde_server"``).

Server plugins are objects or modules with functions marked ``@hookimpl``; third-party ones are distributions
exposing an entry point in the ``tilde_server.plugins`` group. See `tilde.server.iam.plugins` for how they are
loaded.
"""

from __future__ import annotations

import pluggy

__all__ = ["PROJECT_NAME", "hookimpl", "hookspec", "tilde_server_generate_policy"]

PROJECT_NAME = "tilde_server"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec(firstresult=True)
def tilde_server_generate_policy(prompt: str) -> str | None:
    """Turn a sentence into policy text.

    Called by the server once per ``POST /organizations/{org}/policies:generate`` request, through
    `tilde.server.iam.generate.generate_policy`, after the prompt has been checked (non-blank, at most 4,000
    characters). Implementations are asked in pluggy's call order (later-registered plugins first); the first
    one that returns a string supplies the answer and the rest are not asked. The built-in generator
    (`tilde.server.iam.generate`) is a ``trylast`` implementation, so any installed plugin is asked before it.

    Returning ``None`` means "this prompt is not for me": the next implementation is asked, and when none
    answers the request fails with 400 and a message listing example phrases. A returned text is validated
    with `tilde.server.iam.policy.validate_policy` before it reaches the client; an invalid text is never
    stored or returned but becomes a 502 error naming its first problem (the plugin, not the caller, is at
    fault). An exception raised by an implementation becomes a 502 error too. The generated text is only a
    suggestion: the client decides whether to create a policy from it.

    Args:
        prompt: The caller's sentence, e.g. ``"read-only access to repository ml-data"``.

    Returns:
        The policy text, or ``None`` to let the next implementation try.

    """
