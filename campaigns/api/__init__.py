"""The public REST API for triggered sends (``/api/v1/``): key authentication, serializers, views.

Callers authenticate with an API key of one sending account (``Authorization: Bearer <key>``) and
only ever see that account's messages. Errors always carry a human ``detail``; see :mod:`.errors`.
"""
