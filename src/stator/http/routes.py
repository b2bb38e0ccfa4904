"""The route template of a request (``/items/{item_id}``), never its raw path.

After a Starlette or FastAPI app has handled a request, ``scope["route"]`` holds the innermost route that matched
(each routing level overwrites it), and every Mount on the way has moved the part of the path it matched from
``path`` into ``root_path``. So the template is: the growth of ``root_path`` during the request (the mount
prefixes) followed by the route's own template. That covers FastAPI routers with prefixes (the prefix is already
part of the route's path), mounted sub-apps at any depth, and ``root_path`` deployments (the growth is measured
from the ``root_path`` the request arrived with), at the cost of two dict reads — nothing is copied or wrapped.

A mount path with parameters (``Mount("/users/{uid}", ...)``, rare) contributes its literal value; the per-metric
label-set cap bounds what that can do. Frameworks that route differently can pass their own ``route_resolver``
to :func:`stator.instrument`.
"""

from __future__ import annotations

import re
from typing import Any

from stator.asgi import UNMATCHED

__all__ = ["UNMATCHED", "template"]
_MOUNT_TAIL = "/{path}"
_CONVERTOR = re.compile(r"\{(\w+):[^}]*\}")


def template(scope: Any, entry_root_path: str) -> str:
    """The route template of a handled request; ``<unmatched>`` when no route claimed it."""
    route = scope.get("route")
    if route is None:
        # Litestar routes on its own and leaves the matched template in the scope ("/items/{item_id:int}").
        litestar = scope.get("path_template")
        return _CONVERTOR.sub(r"{\1}", litestar) if isinstance(litestar, str) else UNMATCHED
    # path_format drops convertors ("/x/{x_id:int}" -> "/x/{x_id}"): the template people read in dashboards.
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    if not isinstance(path, str):
        return UNMATCHED
    root = scope.get("root_path", "")
    prefix = root[len(entry_root_path) :] if root.startswith(entry_root_path) else ""
    if path.endswith(_MOUNT_TAIL) and hasattr(route, "routes"):
        # The innermost match was a Mount whose app has no router of its own (a raw ASGI app): its own prefix is
        # both in root_path and in its path_format, so count it once.
        own = path[: -len(_MOUNT_TAIL)]
        if prefix.endswith(own):
            prefix = prefix[: len(prefix) - len(own)]
    return (prefix + path) or "/"
