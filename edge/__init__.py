"""On-device half: install bundles, read sources, run TFLite models, report over MQTT.

Nothing under ``edge`` imports TensorFlow or ``packager``; a device needs only the
base dependencies.
"""

__version__ = "0.1.0"
