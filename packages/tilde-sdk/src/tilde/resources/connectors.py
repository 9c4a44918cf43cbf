"""Compatibility module: connectors (`tilde.admin.connectors`)."""

from tilde.admin.connectors import Connector, Connectors, RepositoryConnectors

__all__ = ["Connector", "Connectors", "RepositoryConnectors"]
