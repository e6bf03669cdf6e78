"""The server: inputs, programmes, zone channels, fan-out, outputs, API."""
