"""A local Tilde-compatible server: storage engine, sandbox runtime and IAM.

`LocalServer` runs one in a background thread; `create_app` builds the ASGI application; `ServerConfig` holds
its settings. The command line is ``tilde-server serve``.
"""

from tilde.server._version import __version__
from tilde.server.app import create_app
from tilde.server.config import ServerConfig
from tilde.server.local import LocalServer

__all__ = ["LocalServer", "ServerConfig", "__version__", "create_app"]
