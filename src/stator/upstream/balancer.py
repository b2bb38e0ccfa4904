"""Choosing an instance for one attempt: power of two choices on outstanding requests (the default), round
robin, or random.

Every balancer takes the endpoints the outlier detector admits and, when there are at least two, never returns
``avoid`` (the instance the previous attempt of the same call went to): a retry always goes somewhere else.

Power of two choices (Mitzenmacher; Finagle's and Envoy's least-request default): draw two distinct endpoints at
random and take the one with fewer requests in flight. It follows load as it happens (a slow or stuck instance
accumulates outstanding requests and stops being chosen) at the cost of two random draws, without the herding
of "least loaded of all", where every client piles onto the same momentarily idle instance.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Final, Protocol

from stator.upstream.instances import Endpoint

BALANCERS: Final = ("p2c", "round_robin", "random")


class Balancer(Protocol):
    name: str

    def pick(self, endpoints: Sequence[Endpoint], avoid: Endpoint | None) -> Endpoint:
        """One of ``endpoints`` (never empty); not ``avoid`` when there is another."""


def _avoid_index(endpoints: Sequence[Endpoint], avoid: Endpoint | None) -> int:
    if avoid is None or len(endpoints) < 2:
        return -1
    for i, endpoint in enumerate(endpoints):
        if endpoint is avoid:
            return i
    return -1


class RoundRobin:
    name = "round_robin"

    def __init__(self) -> None:
        self._next = 0

    def pick(self, endpoints: Sequence[Endpoint], avoid: Endpoint | None) -> Endpoint:
        n = len(endpoints)
        i = self._next % n
        self._next = i + 1
        if endpoints[i] is avoid and n > 1:
            i = (i + 1) % n
            self._next = i + 1
        return endpoints[i]


class Random:
    name = "random"

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def pick(self, endpoints: Sequence[Endpoint], avoid: Endpoint | None) -> Endpoint:
        skip = _avoid_index(endpoints, avoid)
        if skip < 0:
            return endpoints[self._rng.randrange(len(endpoints))]
        i = self._rng.randrange(len(endpoints) - 1)
        return endpoints[i + 1 if i >= skip else i]


class PowerOfTwoChoices:
    name = "p2c"

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def pick(self, endpoints: Sequence[Endpoint], avoid: Endpoint | None) -> Endpoint:
        n = len(endpoints)
        if n == 1:
            return endpoints[0]
        skip = _avoid_index(endpoints, avoid)
        m = n - 1 if skip >= 0 else n  # candidates: every index but ``skip``
        if m == 1:
            return endpoints[1 - skip]
        randrange = self._rng.randrange
        i = randrange(m)
        j = randrange(m - 1)
        if j >= i:
            j += 1  # two distinct draws among the candidates
        if skip >= 0:
            i += i >= skip
            j += j >= skip
        a, b = endpoints[i], endpoints[j]
        return b if b.outstanding < a.outstanding else a


def make_balancer(name: str, rng: random.Random | None = None) -> Balancer:
    if name == "p2c":
        return PowerOfTwoChoices(rng)
    if name == "round_robin":
        return RoundRobin()
    if name == "random":
        return Random(rng)
    raise ValueError(f"unknown balancer {name!r} (one of {', '.join(BALANCERS)})")
