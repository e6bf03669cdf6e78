"""The endpoint fleet over MQTT: Loa's own broker (a Mosquitto it starts and supervises) and the
server's control plane (presence, commands with acknowledgements, telemetry)."""
