"""Alerts (bản tin), in three rooms: ``model`` (classes, status, the spec and the alert),
``manager`` (putting alerts on air, their messages, volumes, expiry) and ``cap`` (CAP 1.2
messages). This file imports nothing: importing one room does not load the others."""
