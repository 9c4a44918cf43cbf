"""Compatibility module: agents (`tilde.admin.agents`)."""

from tilde.admin.agents import Agent, Agents

__all__ = ["Agent", "Agents"]
