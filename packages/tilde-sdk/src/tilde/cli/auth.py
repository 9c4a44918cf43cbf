"""``tilde auth``: store, check and remove the credentials every SDK client picks up by default.

The file is ``~/.tilde/config.yaml``, the same one `tilde.core.config.resolve_config` reads. It holds a
secret, so it is written with mode 0600 (in a 0700 directory) and replaced atomically: a crash mid-write never
leaves a truncated file behind.

``login`` never saves what it has not checked: the endpoint must be an ``http(s)://host[:port]`` URL (a pasted
``/api/v1`` or trailing ``/`` is dropped; a URL without a scheme is refused rather than guessed, since a local
server speaks ``http`` and the hosted one ``https``), and the key must be accepted by that server.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import click
import yaml

from tilde.cli._runtime import client, fail
from tilde.core.config import ENV_API_KEY, ENV_API_URL, ENV_ENDPOINT_URL, _default_config_path

__all__ = ["auth", "config_path", "normalize_endpoint"]


def config_path() -> Path:
    """Where the credentials live: ``~/.tilde/config.yaml`` for the current home directory.

    The very path `tilde.core.config.read_config_file` reads by default.
    """
    return _default_config_path()


def normalize_endpoint(url: str) -> str:
    """Check an endpoint URL and bring it to the form the SDK expects (``scheme://host[:port][/path]``).

    Args:
        url: What the user typed, e.g. ``http://127.0.0.1:8000/api/v1/``.

    Returns:
        The URL without trailing ``/`` and without a pasted ``/api/v1`` suffix.

    Raises:
        ValueError: The URL has no ``http``/``https`` scheme, no host, a bad port, a query or a fragment.

    """
    import httpx

    text = url.strip()
    if "://" not in text:
        raise ValueError(
            f"endpoint URL {text!r} has no scheme: did you mean http://{text} or https://{text}?"
        )
    try:
        parsed = httpx.URL(text)
        port = parsed.port
    except (httpx.InvalidURL, ValueError) as exc:
        raise ValueError(f"endpoint URL {text!r} is malformed: {exc}") from exc
    if parsed.scheme not in ("http", "https"):
        raise ValueError(f"endpoint URL {text!r} must start with http:// or https://")
    if not parsed.host:
        raise ValueError(f"endpoint URL {text!r} has no host")
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"endpoint URL {text!r} has an invalid port")
    if parsed.query or parsed.fragment:
        raise ValueError(f"endpoint URL {text!r} must not have a query or a fragment")
    path = parsed.path.rstrip("/")
    if path.endswith("/api/v1"):
        path = path[: -len("/api/v1")].rstrip("/")
    netloc = parsed.netloc.decode("ascii")
    return f"{parsed.scheme}://{netloc}{path}"


def _read_existing(path: Path) -> dict[str, Any]:
    # Keep keys other tools may have written; a missing or unreadable file simply starts afresh.
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    return dict(data) if isinstance(data, dict) else {}


def _write_private(path: Path, settings: dict[str, Any]) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=".config-", suffix=".yaml", dir=path.parent)
    try:
        # mkstemp already creates the file 0600; chmod again in case of an unusual umask-less platform.
        os.chmod(temp_name, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            yaml.safe_dump(settings, handle, default_flow_style=False, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def _check_credentials(endpoint_url: str, api_key: str) -> None:
    """Ask the server for one page of organizations with this key; fail with one line if it says no."""
    from tilde._composed import Client
    from tilde.core.errors import AuthenticationError, NotFoundError, TransportError

    # No retries: a person is waiting, and an unreachable server should be reported at once.
    with Client(endpoint_url=endpoint_url, api_key=api_key, max_retries=0) as probe:
        try:
            list(probe.organizations.list(amount=1))
        except AuthenticationError:
            fail(f"the server at {endpoint_url} refused this API key (401); nothing was saved")
        except NotFoundError:
            fail(f"{endpoint_url} does not look like a Tilde server (no /api/v1 there); nothing was saved")
        except TransportError as exc:
            cause = exc.__cause__ or exc
            fail(f"cannot reach {endpoint_url} ({type(cause).__name__}: {cause}); nothing was saved")


@click.group()
def auth() -> None:
    """Manage the credentials stored in ~/.tilde/config.yaml.

    \b
    Examples:
      tilde auth login --endpoint-url http://127.0.0.1:8000
      tilde auth status
      tilde auth logout
    """  # noqa: D301 - click keeps lines after \b as written


@auth.command()
@click.option(
    "--api-key",
    prompt="API key",
    hide_input=True,
    help="The API key to store (prompted for, without echo, when omitted).",
)
@click.option(
    "--endpoint-url",
    default=None,
    help="The server's root URL, e.g. http://127.0.0.1:8000 (default: the one configured now).",
)
def login(api_key: str, endpoint_url: str | None) -> None:
    """Check an API key against the server, then save it (and the endpoint) for the SDK and CLI.

    A wrong key, or an endpoint that is malformed or unreachable, is refused and nothing is written.

    \b
    Examples:
      tilde auth login --endpoint-url http://127.0.0.1:8000     # prompts for the key
      tilde auth login --api-key "$KEY" --endpoint-url https://tilde.run
    """  # noqa: D301 - click keeps lines after \b as written
    from tilde.core.config import resolve_config

    api_key = api_key.strip()
    if not api_key:
        raise click.BadParameter("the API key must not be empty", param_hint="--api-key")
    if endpoint_url is not None:
        try:
            endpoint = normalize_endpoint(endpoint_url)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--endpoint-url") from exc
    else:
        endpoint = normalize_endpoint(resolve_config().endpoint_url)
    _check_credentials(endpoint, api_key)
    path = config_path()
    settings = _read_existing(path)
    settings["api_key"] = api_key
    if endpoint_url is not None:
        settings["endpoint_url"] = endpoint
    _write_private(path, settings)
    click.echo(f"Logged in to {endpoint}; saved credentials to {path}")


@auth.command()
def logout() -> None:
    """Remove the stored API key (other settings, such as the endpoint, are kept).

    \b
    Example:
      tilde auth logout
    """  # noqa: D301 - click keeps lines after \b as written
    path = config_path()
    settings = _read_existing(path)
    if "api_key" not in settings:
        click.echo("No stored API key.")
        return
    del settings["api_key"]
    _write_private(path, settings)
    click.echo(f"Removed the API key from {path}")


def _endpoint_source() -> str:
    for name in (ENV_ENDPOINT_URL, ENV_API_URL):
        if os.environ.get(name):
            return f"environment variable {name}"
    from tilde.core.config import read_config_file

    if read_config_file().get("endpoint_url"):
        return str(config_path())
    return "default"


_KEY_SOURCES = {
    "environment": f"environment variable {ENV_API_KEY}",
    "sandbox": "sandbox credentials (TILDE_SANDBOX_CREDENTIALS_URI)",
}


def _principal(api: Any) -> str:
    """Who the key belongs to, from ``GET /auth/me`` when the server offers it."""
    from tilde.core.errors import APIError

    try:
        me = api._get_json("/auth/me")
    except APIError as exc:
        if exc.status_code in (404, 405, 501):
            return "(this server does not report it)"
        raise
    principal = me.get("principal")
    if isinstance(principal, dict):  # this project's server names agents and roles too
        name = principal.get("name") or ""
        kind = principal.get("type") or ""
        ident = principal.get("id") or ""
    else:
        user = me.get("user") if isinstance(me.get("user"), dict) else me
        name = user.get("username") or user.get("name") or user.get("email") or ""
        kind = user.get("type") or user.get("principal_type") or "user"
        ident = user.get("id") or ""
    return f"{name} ({kind} {ident})".replace(" )", ")").strip()


@auth.command()
def status() -> None:
    """Show the endpoint, who the credentials belong to and where they came from.

    Exits with status 1 when no key is configured or the server refuses it.

    \b
    Example:
      tilde auth status
    """  # noqa: D301 - click keeps lines after \b as written
    from tilde.core.errors import AuthenticationError

    api = client()
    click.echo(f"Endpoint:    {api._config.endpoint_url}  (from {_endpoint_source()})")
    source = getattr(api, "_credentials_source", None)
    if source is None:
        click.echo("Credentials: none (run `tilde auth login` or set TILDE_API_KEY)")
        raise click.exceptions.Exit(1)
    shown = _KEY_SOURCES.get(source, str(config_path()) if source == "config-file" else source)
    click.echo(f"Credentials: API key from {shown}")
    try:
        list(api.organizations.list(amount=1))
    except AuthenticationError:
        click.echo("Status:      the server refuses this key (401)")
        raise click.exceptions.Exit(1) from None
    click.echo(f"Principal:   {_principal(api)}")
    click.echo("Status:      valid")
