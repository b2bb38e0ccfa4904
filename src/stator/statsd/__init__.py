"""StatsD / DogStatsD push: the service's metrics and StatsD-native observations, aggregated per flush window,
packed into datagrams and sent off the event loop; an absent agent costs counted drops, never an exception."""

from stator.statsd.client import StatsdClient, make_tags
from stator.statsd.pusher import StatsdPusher
from stator.statsd.setup import StatsdHost, setup_statsd

__all__ = ["StatsdClient", "StatsdHost", "StatsdPusher", "make_tags", "setup_statsd"]
