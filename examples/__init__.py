"""Example services built with stator: one per framework, each runnable under every ASGI server."""
