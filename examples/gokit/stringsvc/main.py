"""``python -m examples.gokit.stringsvc.main``: stringsvc as a stator service, configured by STATOR_* (register it
with ``STATOR_REGISTRY=consul`` so addsvc finds it)."""

from __future__ import annotations

import os
import sys

from starlette.applications import Starlette

from examples.gokit.stringsvc.service import Strings
from examples.gokit.stringsvc.transport import http_routes
from stator.config import load_settings
from stator.service import Service


def main() -> int:
    settings = load_settings({"STATOR_SERVICE_NAME": "stringsvc", **os.environ})
    app = Starlette()
    service = Service(settings, app=app)
    app.router.routes.extend(http_routes(Strings(), service.logger))
    return service.run()


if __name__ == "__main__":
    sys.exit(main())
