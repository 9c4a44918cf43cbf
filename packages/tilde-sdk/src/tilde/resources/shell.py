"""Compatibility module: the interactive shell and the ``/exec`` websocket's frame types.

The ``_FRAME_*`` names are the frame type bytes of the ``/exec`` protocol under the names earlier releases
used. The websocket connection itself is opened in `tilde.compute`; there is no ``ws_connect`` to patch here.
"""

from tilde.compute._frames import (
    FRAME_EXIT as _FRAME_EXIT,
)
from tilde.compute._frames import (
    FRAME_LAUNCH as _FRAME_LAUNCH,
)
from tilde.compute._frames import (
    FRAME_STDERR as _FRAME_STDERR,
)
from tilde.compute._frames import (
    FRAME_STDIN as _FRAME_STDIN,
)
from tilde.compute._frames import (
    FRAME_STDIN_CLOSE as _FRAME_STDIN_CLOSE,
)
from tilde.compute._frames import (
    FRAME_STDOUT as _FRAME_STDOUT,
)
from tilde.compute._output import OutputStream, RunResult
from tilde.compute._shell import Shell

__all__ = [
    "_FRAME_EXIT",
    "_FRAME_LAUNCH",
    "_FRAME_STDERR",
    "_FRAME_STDIN",
    "_FRAME_STDIN_CLOSE",
    "_FRAME_STDOUT",
    "OutputStream",
    "RunResult",
    "Shell",
]
