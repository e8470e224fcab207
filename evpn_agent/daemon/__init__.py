"""The daemon: ExaBGP's API process. It wires the edges (speaker, kernel, control socket,
metrics) to the engine through one owner task (``dispatcher``); ``python -m
evpn_agent.daemon --config FILE`` is how ExaBGP runs it."""
