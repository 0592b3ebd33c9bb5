"""The way back from devices: feedback samples read from folders or MQTT, collected into
a labelled data set, and retraining of the bundle's model on it.

It may import ``packager.sources`` and ``packager.compress``.
"""
