"""Where a model and its data come in: trained models (Keras, SavedModel, TFLite) loaded
for conversion, and the calibration and evaluation data sets.

It may import ``edge`` (the runtime, preprocessing) and ``packager.common``; nothing else of
the packager.
"""
