"""Compatibility module: sessions (`tilde.data.sessions`).

``time`` is imported here because tests written for earlier releases patch
``tilde.resources.sessions.time.sleep`` to skip the approval poll's pauses; that replaces ``time.sleep``
itself, which is what `Session.commit` calls.
"""

import time

from tilde.data.sessions import Session

__all__ = ["Session", "time"]
