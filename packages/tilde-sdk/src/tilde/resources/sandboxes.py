"""Compatibility module: sandboxes and their status (`tilde.compute`)."""

from tilde.compute import LogStream, Sandbox, Sandboxes, SandboxStatus

__all__ = ["LogStream", "Sandbox", "SandboxStatus", "Sandboxes"]
