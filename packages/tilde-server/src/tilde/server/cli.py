"""The ``tilde-server`` command.

- ``tilde-server serve [--host] [--port] [--data-dir] [--admin-key] [--public-url] [connection limits]``: run
  the server;
- ``tilde-server user create NAME [--email] [--full-name]`` / ``tilde-server user list``: human users;
- ``tilde-server rotate-master-key`` / ``tilde-server generate-master-key``: encryption at rest;
- ``tilde-server migrate [--database-url]``: apply schema migrations; ``tilde-server copy-metadata
  --database-url``: copy a data directory's SQLite metadata into PostgreSQL;
- ``tilde-server image pull|list|rm|import``: the OCI images sandboxes run on (``serve --registry-mirror``).

The user and key commands work on the data directory while a server runs on it (SQLite in WAL mode).
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import logging
import os
import socket
from pathlib import Path
from typing import Any, NoReturn

import click
import uvicorn.logging

from tilde.server._db import DatabaseUnavailable, Location, PostgresDatabase, database_location
from tilde.server._tuning import tune_malloc
from tilde.server._version import __version__
from tilde.server.access_log import defer_access_log_flush, install_access_log_redaction
from tilde.server.app import create_app
from tilde.server.auth import USER_KEY_PREFIX
from tilde.server.cluster import valid_node_id
from tilde.server.cluster.settings import ClusterSettingsError, record_master_key
from tilde.server.config import (
    ServerConfig,
    load_or_create_admin_key,
    remember_blob_store,
    remember_database_url,
)
from tilde.server.connection_guard import make_server
from tilde.server.crypto import (
    MASTER_KEY_ENV,
    MASTER_KEY_FILE,
    DecryptionError,
    SecretBox,
    encode_key,
    load_master_keys,
)
from tilde.server.errors import ApiError
from tilde.server.images.commands import image as image_commands
from tilde.server.images.commands import registry_options, registry_settings
from tilde.server.registry import Registry
from tilde.server.registry_principals import mint_token
from tilde.server.secret_store import SecretStore
from tilde.server.storage.errors import InvalidArgument
from tilde.server.users import create_user, find_user, has_live_key, list_users

DEFAULT_DATA_DIR = Path("~/.tilde/server")

_data_dir_option = click.option(
    "--data-dir",
    envvar="TILDE_SERVER_DATA_DIR",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The server's data directory (env TILDE_SERVER_DATA_DIR; default ~/.tilde/server).",
)


_database_url_option = click.option(
    "--database-url",
    envvar=["TILDE_SERVER_DATABASE_URL", "TILDE_DATABASE_URL"],
    default=None,
    metavar="postgresql://…",
    help="Keep the metadata (registry, repositories' history, triggers) in this PostgreSQL database instead "
    "of SQLite files in the data directory; needs tilde-server[postgres] (env TILDE_SERVER_DATABASE_URL or "
    "TILDE_DATABASE_URL).",
)


def _check_database_url(database_url: str | None) -> str | None:
    if not database_url:
        return None
    if not database_url.startswith(("postgresql://", "postgres://")):
        _fail("--database-url must be a postgresql:// URL")
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        _fail("--database-url needs PostgreSQL's driver: pip install 'tilde-server[postgres]'")
    return database_url


def _data_dir(data_dir: Path | None) -> Path:
    path = (data_dir or DEFAULT_DATA_DIR).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    raise SystemExit(1)


@click.group()
@click.version_option(__version__, prog_name="tilde-server")
def main() -> None:
    """Run a local Tilde-compatible server."""


class _OneLineErrors(click.Command):
    """A command whose bad options are one ``error: ...`` line (no usage block), exit status 2."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Parse as usual; a usage error is printed on one line."""
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as error:
            click.echo(f"error: {error.format_message()}", err=True)
            ctx.exit(2)


def _listen(host: str, port: int) -> socket.socket:
    """Bind the listening socket now, so a bad host or a busy port fails before anything is printed."""
    try:
        # IPPROTO_TCP named: asyncio turns Nagle off only on sockets whose proto says TCP.
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP, flags=socket.AI_PASSIVE
        )
    except (socket.gaierror, UnicodeError) as error:
        reason = error.strerror if isinstance(error, socket.gaierror) else "not a valid host name"
        _fail(f"cannot listen on host {host!r}: {reason}")
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as error:
        sock.close()
        where = f"{host}:{port}"
        if error.errno == errno.EADDRINUSE:
            _fail(f"{where} is already in use (another server?); choose another port with --port")
        if error.errno == errno.EACCES:
            _fail(f"not allowed to listen on {where} (ports below 1024 need privileges)")
        if error.errno == errno.EADDRNOTAVAIL:
            _fail(f"cannot listen on {where}: {host} is not an address of this machine")
        _fail(f"cannot listen on {where}: {error.strerror or error}")
    sock.set_inheritable(True)
    return sock


def _log_server_messages() -> None:
    """Print the server's own log lines (``tilde.server.*``, INFO and up) like uvicorn's, one line each."""
    handler = logging.StreamHandler()
    handler.setFormatter(uvicorn.logging.DefaultFormatter("%(levelprefix)s %(message)s"))
    server_logger = logging.getLogger("tilde.server")
    server_logger.addHandler(handler)
    server_logger.setLevel(logging.INFO)


@main.command(cls=_OneLineErrors)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--port",
    default=8900,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="TCP port (0: any free port).",
)
@click.option(
    "--data-dir",
    envvar="TILDE_SERVER_DATA_DIR",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where repositories are stored (env TILDE_SERVER_DATA_DIR; default ~/.tilde/server).",
)
@click.option(
    "--admin-key",
    envvar="TILDE_SERVER_ADMIN_KEY",
    default=None,
    help="The admin API key (env TILDE_SERVER_ADMIN_KEY; default: generated once, kept in the data dir).",
)
@click.option(
    "--public-url",
    envvar="TILDE_SERVER_PUBLIC_URL",
    default=None,
    help="The base URL clients reach the server on, used in the upload URLs it hands out (env "
    "TILDE_SERVER_PUBLIC_URL; default http://HOST:PORT, or for 0.0.0.0/:: the address a connection reached).",
)
@click.option(
    "--max-connections",
    envvar="TILDE_SERVER_MAX_CONNECTIONS",
    type=click.IntRange(1),
    default=None,
    help="Most open client connections (env TILDE_SERVER_MAX_CONNECTIONS; default: from the file limit).",
)
@click.option(
    "--max-connections-per-address",
    envvar="TILDE_SERVER_MAX_CONNECTIONS_PER_ADDRESS",
    type=click.IntRange(0),
    default=None,
    help="Most open connections from one client address, 0 for no cap (env "
    "TILDE_SERVER_MAX_CONNECTIONS_PER_ADDRESS; default: a quarter of the total, at least 256).",
)
@click.option(
    "--header-timeout",
    envvar="TILDE_SERVER_HEADER_TIMEOUT",
    type=click.FloatRange(0.1),
    default=20.0,
    show_default=True,
    help="Seconds a client may take to send a request's headers (env TILDE_SERVER_HEADER_TIMEOUT).",
)
@click.option(
    "--keep-alive-timeout",
    envvar="TILDE_SERVER_KEEP_ALIVE_TIMEOUT",
    type=click.FloatRange(0.1),
    default=5.0,
    show_default=True,
    help="Seconds an idle keep-alive connection stays open (env TILDE_SERVER_KEEP_ALIVE_TIMEOUT).",
)
@click.option(
    "--max-header-size",
    envvar="TILDE_SERVER_MAX_HEADER_SIZE",
    type=click.IntRange(1024),
    default=64 * 1024,
    show_default=True,
    help="Largest request header block in bytes; larger ones get 431 (env TILDE_SERVER_MAX_HEADER_SIZE).",
)
@click.option(
    "--blob-store",
    envvar="TILDE_SERVER_BLOB_STORE",
    default=None,
    metavar="s3://BUCKET[/PREFIX]",
    help="Keep blobs in an S3-compatible object store instead of the data directory; credentials and region "
    "come from the standard AWS environment variables and files (env TILDE_SERVER_BLOB_STORE).",
)
@click.option(
    "--s3-endpoint-url",
    envvar="TILDE_SERVER_S3_ENDPOINT_URL",
    default=None,
    help="URL of the object store for --blob-store (default AWS S3); clients upload to and download from "
    "presigned URLs there (env TILDE_SERVER_S3_ENDPOINT_URL).",
)
@click.option(
    "--s3-public-endpoint-url",
    envvar="TILDE_SERVER_S3_PUBLIC_ENDPOINT_URL",
    default=None,
    help="URL of the object store as clients reach it, when it differs from --s3-endpoint-url "
    "(env TILDE_SERVER_S3_PUBLIC_ENDPOINT_URL).",
)
@click.option(
    "--blob-cache-size",
    envvar="TILDE_SERVER_BLOB_CACHE_SIZE",
    type=click.IntRange(0),
    default=10 * 1024,
    show_default=True,
    help="MiB of blob files this node caches for sandboxes with --blob-store "
    "(env TILDE_SERVER_BLOB_CACHE_SIZE).",
)
@click.option(
    "--node-id",
    envvar="TILDE_SERVER_NODE_ID",
    default=None,
    help="This replica's id in a cluster on --database-url (env TILDE_SERVER_NODE_ID; default: generated "
    "once, kept in the data dir).",
)
@click.option(
    "--node-url",
    envvar="TILDE_SERVER_NODE_URL",
    default=None,
    help="The base URL other replicas reach this one at (env TILDE_SERVER_NODE_URL; default http://HOST:PORT).",
)
@click.option(
    "--node-lease",
    envvar="TILDE_SERVER_NODE_LEASE",
    type=click.FloatRange(1.0),
    default=10.0,
    show_default=True,
    help="Seconds a cluster node counts as alive after its last heartbeat; its running sandboxes are "
    "declared lost after that (env TILDE_SERVER_NODE_LEASE).",
)
@click.option(
    "--no-sandboxes",
    "no_sandboxes",
    envvar="TILDE_SERVER_NO_SANDBOXES",
    is_flag=True,
    default=False,
    help="Run no sandboxes here: an API-only replica of a cluster (env TILDE_SERVER_NO_SANDBOXES).",
)
@_database_url_option
@registry_options
def serve(
    host: str,
    port: int,
    data_dir: Path | None,
    admin_key: str | None,
    public_url: str | None,
    max_connections: int | None,
    max_connections_per_address: int | None,
    header_timeout: float,
    keep_alive_timeout: float,
    max_header_size: int,
    blob_store: str | None,
    s3_endpoint_url: str | None,
    s3_public_endpoint_url: str | None,
    blob_cache_size: int,
    node_id: str | None,
    node_url: str | None,
    node_lease: float,
    no_sandboxes: bool,
    database_url: str | None,
    registry_mirrors: tuple[str, ...],
    registry_auth_file: Path | None,
    image_cache_size: int | None,
) -> None:
    """Serve the Tilde API until interrupted.

    Invalid options, a host that cannot be resolved and a port already in use are reported in one line,
    before anything else is printed. The access log never shows secret query values (presigned URLs'
    signatures, tokens, keys).

    Connections are capped (in total and per client address) and must send their headers in time; requests
    in progress (uploads, long polls, exec sessions) are never timed out.

    Example: tilde-server serve --port 8900 --data-dir ~/tilde-data
    """
    tune_malloc()
    sock = _listen(host, port)
    port = sock.getsockname()[1]
    try:
        data_dir = (data_dir or DEFAULT_DATA_DIR).expanduser()
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            if not admin_key:
                admin_key, created = load_or_create_admin_key(data_dir)
            else:
                created = False
        except OSError as error:
            _fail(f"cannot use the data directory {data_dir}: {error.strerror or error}")
        if created:
            click.echo(f"Generated admin API key (stored in {data_dir / 'admin_key'}, shown once):")
            click.echo(f"  {admin_key}")
        if public_url and not public_url.startswith(("http://", "https://")):
            _fail(f"--public-url must start with http:// or https:// (got {public_url!r})")
        if node_url and not node_url.startswith(("http://", "https://")):
            _fail(f"--node-url must start with http:// or https:// (got {node_url!r})")
        if node_id and not valid_node_id(node_id):
            _fail(f"--node-id must be 1 to 63 letters, digits, '.', '_' or '-' (got {node_id!r})")
        config = ServerConfig(
            data_dir=data_dir,
            host=host,
            port=port,
            admin_key=admin_key,
            public_url=public_url or None,
            max_connections=max_connections,
            max_connections_per_address=max_connections_per_address,
            header_timeout=header_timeout,
            keep_alive_timeout=keep_alive_timeout,
            max_header_bytes=max_header_size,
            blob_store=blob_store or None,
            s3_endpoint_url=s3_endpoint_url or None,
            s3_public_endpoint_url=s3_public_endpoint_url or None,
            blob_cache_bytes=blob_cache_size * 1024 * 1024,
            database_url=_check_database_url(database_url),
            node_id=node_id or None,
            node_url=node_url or None,
            sandboxes=not no_sandboxes,
            node_lease_seconds=node_lease,
            **registry_settings(registry_mirrors, registry_auth_file, image_cache_size),
        )
        if config.blob_store and not config.blob_store.startswith("s3://"):
            _fail(f"--blob-store must be s3://bucket[/prefix] (got {config.blob_store!r})")
        try:
            app = create_app(config)
        except (InvalidArgument, DatabaseUnavailable, ClusterSettingsError) as error:
            _fail(str(error))
        click.echo(f"tilde-server {__version__} on http://{host}:{port} (data in {data_dir})")
        server = make_server(app, config, host=host, port=port, log_level="info")
        limits = server.guard.limits
        click.echo(
            f"connections: at most {limits.max_connections}, {limits.max_connections_per_address or 'any'} "
            f"per address; headers within {limits.header_timeout:g} s"
        )
        # uvicorn configures its loggers when the config is made; the filter goes on after that.
        install_access_log_redaction()
        defer_access_log_flush()
        _log_server_messages()
        # uvicorn re-raises the Ctrl-C it handled once it has shut down; that is a normal end here.
        with contextlib.suppress(KeyboardInterrupt):
            server.run(sockets=[sock])
    finally:
        sock.close()


@main.group()
def user() -> None:
    """Create and list human users (members are added to organizations by user name)."""


@user.command("create")
@click.argument("name")
@click.option("--email", default="", help="The user's e-mail address.")
@click.option("--full-name", default="", help="The user's display name.")
@_data_dir_option
@_database_url_option
def user_create(
    name: str, email: str, full_name: str, data_dir: Path | None, database_url: str | None
) -> None:
    """Create the user NAME and print its API key (shown this once only)."""
    registry = Registry(_registry_location(data_dir, database_url))
    try:
        note = "created user"
        try:
            record = create_user(registry, name, email=email, full_name=full_name)
        except ApiError as error:
            # A user an organization added by name before it was created here exists without any key:
            # give it its first one instead of leaving it unable to sign in.
            existing = find_user(registry, name) if error.status == 409 else None
            if existing is None or has_live_key(registry, existing.id):
                _fail(error.message)
            record, note = existing, "issued the first API key of existing user"
        token = mint_token(USER_KEY_PREFIX)
        registry.create_key("user", record.id, token, name=f"{name} (created by tilde-server user create)")
    finally:
        registry.close()
    click.echo(f"{note} {name} ({record.id}); its API key, shown once, follows on stdout", err=True)
    click.echo(token)


@user.command("list")
@_data_dir_option
@_database_url_option
def user_list(data_dir: Path | None, database_url: str | None) -> None:
    """List users: name, id and e-mail address (never keys)."""
    registry = Registry(_registry_location(data_dir, database_url))
    try:
        users = list_users(registry)
    finally:
        registry.close()
    for record in users:
        click.echo(f"{record.username}\t{record.id}\t{record.email}")


@main.command("generate-master-key")
def generate_master_key() -> None:
    """Print a new random master key in the form TILDE_SERVER_MASTER_KEY takes."""
    click.echo(encode_key(os.urandom(32)))


def _registry_location(data_dir: Path | None, database_url: str | None) -> Location:
    """Return where the data directory's registry is: its SQLite file, or the database it was served with."""
    directory = _data_dir(data_dir)
    url = remember_database_url(directory, _check_database_url(database_url))
    return database_location(directory, url, "registry")


def _connector_store(path: Location, box: SecretBox) -> Any:
    """Return the connector store when this server has connectors (their credentials are sealed too)."""
    for module_name in ("tilde.server.connectors", "tilde.server.connectors.store"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        store_class = getattr(module, "ConnectorStore", None)
        if store_class is not None and hasattr(store_class, "reencrypt_all"):
            return store_class(path, box)
    return None


@main.command("rotate-master-key")
@_data_dir_option
@_database_url_option
def rotate_master_key(data_dir: Path | None, database_url: str | None) -> None:
    """Re-seal every stored secret and connector credential under the first key of TILDE_SERVER_MASTER_KEY.

    Set TILDE_SERVER_MASTER_KEY="NEW,OLD" (comma-separated; the first one encrypts). A key generated into
    the data directory is used to decrypt as well, so moving from it to a configured key needs only NEW.
    """
    directory = _data_dir(data_dir)
    configured = os.environ.get(MASTER_KEY_ENV, "").strip()
    if not configured:
        _fail(f"set {MASTER_KEY_ENV} to NEW,OLD (the new key first; see tilde-server generate-master-key)")
    try:
        keys = load_master_keys(directory)
    except ValueError as error:
        _fail(str(error))
    generated = directory / MASTER_KEY_FILE
    if generated.exists() and len(generated.read_bytes()) == 32 and generated.read_bytes() not in keys:
        keys.append(generated.read_bytes())
    box = SecretBox(keys)
    path = _registry_location(directory, database_url)
    Registry(path).close()  # creates or upgrades the registry's tables first
    secrets = SecretStore(path, box)
    connectors = _connector_store(path, box)
    try:
        resealed = secrets.reencrypt_all(box)
        credentials = connectors.reencrypt_all(box) if connectors is not None else 0
    except DecryptionError as error:
        _fail(f"a stored value cannot be decrypted with the given keys ({error}); nothing else changed")
    finally:
        secrets.close()
        if connectors is not None:
            connectors.close()
    if isinstance(path, PostgresDatabase):
        # Every value is sealed under the new key now: replicas started with it alone are the cluster's.
        record_master_key(path.url, keys[0])
    click.echo(
        f"re-sealed {resealed + credentials} values ({resealed} secrets, {credentials} connector credentials)"
    )
    if generated.exists():
        click.echo(
            f"{generated} (the generated key) is no longer needed once the server runs with {MASTER_KEY_ENV}",
            err=True,
        )


@main.command()
@_data_dir_option
@_database_url_option
def migrate(data_dir: Path | None, database_url: str | None) -> None:
    """Apply the schema migrations the databases lack, and print each store's schema version.

    The server applies them at start-up too; run this first when upgrading several replicas.

    Example: tilde-server migrate --database-url postgresql://tilde@db/tilde
    """
    from tilde.server.dbtools import migrate_all

    directory = _data_dir(data_dir)
    url = remember_database_url(directory, _check_database_url(database_url))
    try:
        versions = migrate_all(directory, url)
    except Exception as error:  # the driver's errors: unreachable server, refused login, ...
        _fail(f"cannot migrate: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
    for component, version in versions.items():
        click.echo(f"{component}: schema version {version}")


@main.command("copy-metadata")
@_data_dir_option
@_database_url_option
def copy_metadata_command(data_dir: Path | None, database_url: str | None) -> None:
    """Copy a data directory's metadata (SQLite) into an empty PostgreSQL database, offline.

    Stop the server first. Blobs stay in the data directory: serve with the same --data-dir and the new
    --database-url afterwards.

    Example: tilde-server copy-metadata --data-dir ~/tilde-data --database-url postgresql://tilde@db/tilde
    """
    from tilde.server.dbtools import copy_metadata

    url = _check_database_url(database_url)
    if url is None:
        _fail("copy-metadata needs --database-url (the target)")
    source = (data_dir or DEFAULT_DATA_DIR).expanduser()
    try:
        report = copy_metadata(source, url, progress=lambda table, rows: click.echo(f"{table}: {rows} rows"))
    except (ValueError, DatabaseUnavailable) as error:
        _fail(str(error))
    # From now on the directory's commands and starts use the copy, never the SQLite files left behind.
    remember_database_url(source, url)
    click.echo(f"copied {sum(report.rows.values())} rows from {source}")


@main.command("copy-blobs")
@_data_dir_option
@click.option(
    "--blob-store",
    envvar="TILDE_SERVER_BLOB_STORE",
    required=True,
    metavar="s3://BUCKET[/PREFIX]",
    help="The S3 blob store to copy into (env TILDE_SERVER_BLOB_STORE).",
)
@click.option(
    "--s3-endpoint-url",
    envvar="TILDE_SERVER_S3_ENDPOINT_URL",
    default=None,
    help="URL of the object store (default AWS S3; env TILDE_SERVER_S3_ENDPOINT_URL).",
)
def copy_blobs_command(data_dir: Path | None, blob_store: str, s3_endpoint_url: str | None) -> None:
    """Copy a data directory's blob files into an S3 blob store, verifying each one's SHA-256.

    Blobs the bucket holds already are skipped, so the copy can be run again (while the server still serves,
    then once more after stopping it). Serve with the same --data-dir and --blob-store afterwards; credentials
    and region come from the standard AWS environment variables and files.

    Example: tilde-server copy-blobs --data-dir ~/tilde-data --blob-store s3://tilde-blobs/prod
    """
    from tilde.server.storage.blobcache import CorruptBlob
    from tilde.server.storage.s3blobs import BlobStoreUnavailable, copy_local_blobs, open_s3_blob_store

    source = (data_dir or DEFAULT_DATA_DIR).expanduser()
    if not (source / "blobs").is_dir():
        _fail(f"{source} has no blobs directory")
    try:
        store = open_s3_blob_store(
            blob_store,
            cache_dir=source / "blob-cache",
            cache_bytes=0,
            endpoint_url=s3_endpoint_url or None,
        )
    except InvalidArgument as error:
        _fail(str(error))
    try:
        copied, skipped = copy_local_blobs(
            source / "blobs", store, progress=lambda done: click.echo(f"{done} blobs handled", err=True)
        )
    except (CorruptBlob, BlobStoreUnavailable) as error:
        _fail(str(error))
    finally:
        store.close()
    # From now on the directory's starts use the bucket, never the blob files left behind.
    remember_blob_store(source, blob_store, s3_endpoint_url or None)
    click.echo(f"copied {copied} blobs to {blob_store} ({skipped} were there already)")


main.add_command(image_commands)
