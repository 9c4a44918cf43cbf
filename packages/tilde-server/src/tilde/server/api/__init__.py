"""HTTP routes, one module per resource family.

Each module exposes ``routes: list[starlette.routing.BaseRoute]`` with paths relative to ``/api/v1``
(``create_app`` mounts them there; a route whose path already starts with ``/api/v1`` is added as is).
"""
