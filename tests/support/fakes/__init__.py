"""Loopback fakes of the chat platforms clawgate talks to (Telegram Bot API, Slack Web API and
Socket Mode, Discord REST and Gateway) plus a webhook receiver, for tests and benchmarks.

Each fake is a small Starlette server on 127.0.0.1 that follows the platform's documented API
(shapes, status codes, error bodies, rate-limit hints) closely enough that the platform's real
client library, pointed at it by its base-URL setting, works unchanged. ``harness.FakeServer`` is
their common base: start/stop, recording of every call, ``wait_for``, scripted faults.
"""
