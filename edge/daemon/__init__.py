"""The daemon: its config (contract 2), the model it serves and how to feed and decode it,
the supervisor that runs sources, pipeline and sinks, the control surface that commands
act through, and the one health check that /healthz, /metrics and telemetry read.

It may import every part below it (runtime, sources, pipeline, postprocess, sinks, mqtt,
http, monitor, install). Those parts read the daemon only through small protocols
(``edge.mqtt.telemetry.DaemonView``, ``edge.http.routes.EndpointView``), except the
config models in ``edge.daemon.config``, which import nothing from the daemon.
"""
