"""One-shot execution: ``repo.execute(...)``."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

from tilde.compute._frames import command_text
from tilde.compute._output import OutputStream, RunResult
from tilde.compute._sandboxes import DEFAULT_WAIT_SECONDS, Sandboxes
from tilde.core.errors import CommandError, TildeError

#: Extra seconds ``execute`` waits beyond the sandbox's own ``timeout`` (start-up and commit take time too).
_COMMIT_ALLOWANCE = 30.0


def execute(
    sandboxes: Sandboxes,
    command: str | Sequence[str],
    *,
    image: str,
    env: Mapping[str, str] | None = None,
    timeout: int | None = None,
    check: bool = True,
    mountpoint: str | None = None,
    path_prefix: str | None = None,
    network: bool | None = None,
) -> RunResult:
    """Run ``command`` in a new one-shot sandbox, wait for it to end and collect its output.

    The sandbox's end is learnt through the status long poll (the server answers the moment the sandbox
    stops), falling back to the published client's one-second polls on servers that ignore it.

    Args:
        sandboxes: The repository's sandbox collection.
        command: A shell command line (run with ``sh -c``) or an argv list.
        image: The image to run.
        env: Environment variables of the sandbox.
        timeout: The sandbox's ``timeout_seconds``.
        check: Raise :class:`CommandError` when the exit status is not 0.
        mountpoint: Where the repository appears in the sandbox.
        path_prefix: Mount only this part of the repository.
        network: Allow network access (None: the server's default, off on Tilde's local server).

    Returns:
        The merged stdout and stderr (in ``stdout``; ``stderr`` is empty) and the exit status (-1 when the
        sandbox failed without one).

    Raises:
        CommandError: ``check`` is set and the command failed.
        SandboxError: The sandbox did not end within 300 s (or ``timeout`` plus a margin, if longer).

    """
    sandbox = sandboxes.create(
        image=image,
        command=command,
        env=env,
        mountpoint=mountpoint,
        path_prefix=path_prefix,
        timeout_seconds=timeout,
        network=network,
    )
    limit = (
        DEFAULT_WAIT_SECONDS if timeout is None else max(DEFAULT_WAIT_SECONDS, timeout + _COMMIT_ALLOWANCE)
    )
    status = sandbox.wait(timeout=limit)
    try:
        with status.stdout() as log:
            output = log.read()
    except TildeError:
        output = b""  # the output is a courtesy: its absence must not hide the outcome
    code = status.exit_code
    if code is None:
        # A sandbox that ended "done" ran its command successfully even if the server omits the code.
        code = 0 if status.state == "done" else -1
    result = RunResult(OutputStream(output), OutputStream(b""), code)
    if check and code != 0:
        text = command_text(command)
        raise CommandError(f"Command '{text}' exited with code {code}", result=result, command=text)
    if status.is_awaiting_approval:
        warnings.warn(
            f"Approval required - review and approve at: {status.web_url}", UserWarning, stacklevel=3
        )
    return result
