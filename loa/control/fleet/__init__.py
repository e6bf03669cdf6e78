"""The endpoint fleet over MQTT: topics and payloads, credentials, the embedded broker, and the
server's control plane (presence, commands with acknowledgements, telemetry)."""
