"""Registration with Consul's agent API (or the dev registry, which speaks it).

Calls (``consul_spec.md`` §1):

* register: ``PUT /v1/agent/service/register`` with ID, Name, Tags, Address, Port, Meta (version, run_id,
  metrics path) and one check - HTTP on ``/-/ready`` (Consul probes readiness itself) or TTL (we report it);
* presence: ``GET /v1/agent/service/<id>`` - 200 present, 404 gone (agent restarted in -dev mode, data dir wiped,
  reaped by DeregisterCriticalServiceAfter, token revoked);
* TTL heartbeat: ``PUT /v1/agent/check/update/service:<id>`` with the readiness verdict; a 404 means the agent
  lost the check, and the roster re-registers - Spring Cloud Consul's ``reregister-service-on-failure``;
* deregister: ``PUT /v1/agent/service/deregister/<id>``; 404 (unknown ID, Consul >= 1.11) is success.

The token travels as ``X-Consul-Token`` in the client's default headers and never appears in a log line (the
project client redacts it); TLS comes from ``STATOR_CONSUL_*`` through :func:`stator.client.consul_client`.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson

from stator.client import HTTPClient, UnexpectedStatus, body_excerpt, expect_2xx
from stator.config.durations import format_duration
from stator.roster.roster import Instance

CheckKind = Literal["http", "ttl"]

# A presence answer is one service definition: a few KB. Anything larger is not an answer to our question.
MAX_BODY = 256 * 1024
OUTPUT_MAX = 4096  # Consul keeps at most this much check output


class ConsulRegistrar:
    kind = "consul"

    def __init__(
        self,
        client: HTTPClient,
        *,
        check: CheckKind = "http",
        check_interval: float = 10.0,
        check_timeout: float = 5.0,
        ttl: float = 30.0,
        deregister_critical_after: float = 600.0,
    ) -> None:
        self.client = client
        self.check = check
        self.check_interval = check_interval
        self.check_timeout = check_timeout
        self.ttl = ttl
        self.deregister_critical_after = deregister_critical_after

    @property
    def endpoint(self) -> str:
        return str(self.client.base_url).rstrip("/")

    @property
    def heartbeat_interval(self) -> float | None:
        # A third of the TTL leaves room for two lost heartbeats (or one slow agent) before the check expires.
        return self.ttl / 3 if self.check == "ttl" else None

    @staticmethod
    def check_id(instance: Instance) -> str:
        return f"service:{instance.id}"

    def payload(self, instance: Instance) -> dict[str, Any]:
        """The registration body (Go-style duration strings, as Consul requires a unit)."""
        check: dict[str, Any] = {
            "CheckID": self.check_id(instance),
            "Name": f"{instance.name} readiness",
            # We register only after readiness passed: starting 'passing' makes the instance visible to
            # ?passing queries at once instead of after the first probe (fresh Consul checks are critical).
            "Status": "passing",
        }
        if self.check == "ttl":
            check["TTL"] = format_duration(self.ttl)
            check["Notes"] = "TTL heartbeat from the instance's readiness (stator roster)"
        else:
            check["HTTP"] = instance.health_url
            check["Method"] = "GET"
            check["Interval"] = format_duration(self.check_interval)
            check["Timeout"] = format_duration(self.check_timeout)
        if self.deregister_critical_after > 0:
            check["DeregisterCriticalServiceAfter"] = format_duration(self.deregister_critical_after)
        return {
            "ID": instance.id,
            "Name": instance.name,
            "Tags": list(instance.tags),
            "Address": instance.address,
            "Port": instance.port,
            "Meta": dict(instance.meta),
            "Check": check,
        }

    async def register(self, instance: Instance) -> None:
        response = await self.client.put("/v1/agent/service/register", json=self.payload(instance), max_body=MAX_BODY)
        expect_2xx(response)

    async def deregister(self, instance: Instance) -> None:
        response = await self.client.put(f"/v1/agent/service/deregister/{instance.id}", max_body=MAX_BODY)
        if response.status_code == 404:
            return  # already gone (reaped, agent restarted): the goal of deregistering is met
        expect_2xx(response)

    async def present(self, instance: Instance) -> bool:
        response = await self.client.get(f"/v1/agent/service/{instance.id}", max_body=MAX_BODY)
        if response.status_code == 404:
            return False
        expect_2xx(response)
        # A 200 from something that is not Consul (a proxy's error page, a half-started agent) is not presence.
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise ValueError(f"agent/service answer is not JSON: {body_excerpt(response.content, 120)}") from None
        if not isinstance(body, dict) or body.get("ID") != instance.id:
            raise ValueError(f"agent/service answer does not describe {instance.id!r}")
        return True

    async def heartbeat(self, instance: Instance, ready: bool, note: str) -> bool:
        if self.check != "ttl":
            return await self.present(instance)
        status = "passing" if ready else "critical"
        body = {"Status": status, "Output": (note or status)[:OUTPUT_MAX]}
        response = await self.client.put(
            f"/v1/agent/check/update/{self.check_id(instance)}", json=body, max_body=MAX_BODY
        )
        if response.status_code == 404:
            return False
        try:
            expect_2xx(response)
        except UnexpectedStatus as exc:
            # 500 'does not have associated TTL': someone re-registered us with an HTTP check; ours wins.
            if exc.status == 500 and "TTL" in exc.body:
                return False
            raise
        return True

    async def aclose(self) -> None:
        await self.client.aclose()
