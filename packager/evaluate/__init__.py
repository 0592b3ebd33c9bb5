"""Evaluation of converted variants against the source model: accuracy or fidelity,
latency, the gate, the JSON and PNG report, and the reference statistics that the device
scores drift against.

It may import ``packager.sources`` and ``edge`` (the runtime, preprocessing, monitor).
"""
