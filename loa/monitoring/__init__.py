"""Counters, latency figures and (later) metrics, health, broadcast log and reports."""
