"""The route template of a request (``/items/{item_id}``), never its raw path.

Starlette and FastAPI routers write ``scope["route"]`` at every routing level (a Mount, then the route inside
it), each write replacing the last — so after the request only the innermost route is left and a mount's prefix
is lost. :class:`RouteScope` is the scope dict handed to the application: it remembers every ``route`` written
into it, and the template is the concatenation of those routes' paths. That resolves routers with prefixes
(FastAPI flattens them into the route path), mounted sub-apps at any depth and ``root_path`` deployments (the
templates are the app's own, relative to its root path) without matching any regex a second time.
Frameworks that route differently can pass their own ``route_resolver`` to :func:`stator.instrument`.
"""

from __future__ import annotations

from typing import Any

UNMATCHED = "<unmatched>"


class RouteScope(dict[str, Any]):
    """An ASGI scope that records each ``route`` object the routers assign into it (Starlette assigns with
    ``scope["route"] = ...``, FastAPI through ``scope.update(child_scope)``: both are seen)."""

    __slots__ = ("root_path", "routes")

    def __init__(self, scope: Any) -> None:
        super().__init__(scope)
        self.routes: list[Any] = []
        self.root_path: str = scope.get("root_path", "")

    def __setitem__(self, key: str, value: Any) -> None:
        if key == "route":
            self._record(value)
        super().__setitem__(key, value)

    def update(self, *args: Any, **kwargs: Any) -> None:
        other = dict(*args, **kwargs)
        route = other.get("route")
        if route is not None:
            self._record(route)
        super().update(other)

    def _record(self, route: Any) -> None:
        if not self.routes or self.routes[-1] is not route:
            self.routes.append(route)


def _path_of(route: Any) -> str | None:
    # path_format drops convertors ("/x/{x_id:int}" -> "/x/{x_id}"): the template people read in dashboards.
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return path if isinstance(path, str) else None


def template(scope: RouteScope) -> str:
    """The route template of a handled request; ``<unmatched>`` when no route claimed it."""
    routes = scope.routes or ([scope["route"]] if scope.get("route") is not None else [])
    if not routes:
        return UNMATCHED
    paths = [_path_of(route) for route in routes]
    if any(p is None for p in paths):
        return UNMATCHED
    inner = paths[-1]
    assert inner is not None
    if len(paths) > 1:
        # Starlette: every routing level recorded its route, mounts first; a mount's format ends in "/{path}".
        prefix = "".join(str(p).removesuffix("/{path}").rstrip("/") for p in paths[:-1])
    else:
        # A router that records no Mount (FastAPI's app.mount): the mount consumed part of the path into
        # root_path, which is the literal prefix (mount paths are literals in practice).
        final_root = scope.get("root_path", "")
        prefix = final_root[len(scope.root_path) :] if final_root.startswith(scope.root_path) else ""
    return (prefix + inner) or "/"
