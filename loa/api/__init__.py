"""The REST API, ``/api/v1``: one module per resource, every call with
``Authorization: Bearer <token>`` or a browser session's cookie (and its CSRF token).

- ``status``: status, metrics, alarms, broadcast log, audit log (reads)
- ``zones``: the zone tree, live takeovers, requests, a zone's alert volume
- ``commands``: fleet commands to a zone or an endpoint, and their status
- ``endpoints``: the endpoint registry, MQTT credentials, CSV, Mosquitto files
- ``alerts``: emergency alerts and CAP 1.2
- ``schedule``: the schedule, and as iCalendar
- ``media``: the media library
- ``reports``: a commune's report over a period
- ``users``: accounts and their personal tokens
- ``sessions``: login, logout, who am I
- ``events``: the console's live stream (server-sent events: status and levels)

Around them: ``resource`` (the server and caller on a request, rights, scope, bodies),
``middleware`` (bearer token or session and CSRF, no keep-alive), ``errors`` (the one table
from errors to HTTP answers, and its middleware), ``audit`` (the one audit decorator),
``uploads`` (multipart files to disk) and ``routes`` (``Api``, every route).

The composition root imports ``Api`` from ``routes`` and the middlewares from ``middleware``
and ``errors``; this file imports nothing, so importing one module does not load the others.
"""
