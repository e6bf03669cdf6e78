"""The control plane: the store, endpoints, media, accounts, alerts, the schedule, the MQTT
fleet, and listener sessions by endpoint."""
