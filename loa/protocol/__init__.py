"""Wire formats shared by the server and the load tester: the native endpoint protocol, HTTP
heads (Icecast sources and listeners), MQTT topics and payloads and credentials, CAP 1.2."""
