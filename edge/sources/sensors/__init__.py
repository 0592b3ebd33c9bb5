"""Sensor sources: serial lines, CSV replays, MQTT topics and synthetic signals, each
parsed into numeric samples and cut into windows (``windowing``) for the model.

They may import ``edge.sources`` (base, config, frames) and ``edge.mqtt.credentials``.
"""
