"""`edge dashboard`: a live page of the fleet, fed by the MQTT topic tree (contract 3).

- ``state``: Fleet, the thread-safe model of every device (pure Python, no broker);
- ``payloads``: which topic is what, the envelope check, the summaries a tile shows;
- ``subscriber``: BrokerFeed, the paho client that feeds the Fleet and reconnects;
- ``server``: Dashboard, the HTTP server (page, /api/state, /events as SSE);
- ``settings``: DashboardSettings, what the command line gives;
- ``command``: the `edge dashboard` sub-command;
- ``static/``: the page itself (vanilla JS, inline SVG charts, no external resources).

It runs wherever the broker is reachable (a workstation, a gateway) and needs nothing
beyond the device's dependencies. This file imports nothing, so `edge --help` stays fast.
"""
