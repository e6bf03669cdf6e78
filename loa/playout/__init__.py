"""The real-time path, in data-flow order: inputs, programmes, the engine (master clock), zone
channels, fan-out, outputs, and the front door that hands sockets to them. Nothing here waits
for the control plane."""
