"""Watching the server: metrics, alarms, loop lag, broadcast log and reports. Metrics and
alarms read the narrow views of ``views`` (handed over by the composition root), never the
server itself."""
