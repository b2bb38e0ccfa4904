"""``python -m examples.gokit.addsvc.main``: addsvc as a stator service. With ``STATOR_UPSTREAM_SERVICE=stringsvc``
Concat's result is uppercased by stringsvc, found through the registry (or ``STATOR_UPSTREAM_INSTANCES``)."""

from __future__ import annotations

import os
import sys

from starlette.applications import Starlette

from examples.gokit.addsvc.middleware import UppercaseConcat
from examples.gokit.addsvc.service import Adder, AddService
from examples.gokit.addsvc.transport import StringsClient, http_routes
from stator.config import load_settings
from stator.service import Service
from stator.upstream import UpstreamHub


def main() -> int:
    settings = load_settings({"STATOR_SERVICE_NAME": "addsvc", **os.environ})
    app = Starlette()
    service = Service(settings, app=app)
    svc: AddService = Adder()
    if settings.upstream.service:
        strings = StringsClient(UpstreamHub(service).get(settings.upstream.service))
        svc = UppercaseConcat(svc, strings)
    app.router.routes.extend(http_routes(svc, service.logger))
    return service.run()


if __name__ == "__main__":
    sys.exit(main())
