"""Conversion to TFLite for one target: the target rules, the converter and its
quantization modes, the op checks for an older device runtime, the GPU delegate analysis,
and the Edge TPU plan and compiler.

It may import ``packager.sources`` and ``packager.common``, and ``edge.runtime`` to
load-test what it converts.
"""
