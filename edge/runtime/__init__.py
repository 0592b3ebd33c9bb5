"""The on-device runtime core: find a TFLite runtime, load a model through the best
delegate, run it with quantized I/O handled, and inspect models without TensorFlow."""

from edge.runtime.backend import Backend, load_backend, probe_backends
from edge.runtime.delegates import DEFAULT_CHAIN, DelegateAttempt, DelegateSpec, parse_chain
from edge.runtime.model_info import ModelInfo, read_model_info
from edge.runtime.runner import Delegation, ModelRunner, load_again, load_model
from edge.runtime.tensors import IoTensor, dequantize, quantize

__all__ = [
    "DEFAULT_CHAIN",
    "Backend",
    "DelegateAttempt",
    "DelegateSpec",
    "Delegation",
    "IoTensor",
    "ModelInfo",
    "ModelRunner",
    "dequantize",
    "load_again",
    "load_backend",
    "load_model",
    "parse_chain",
    "probe_backends",
    "quantize",
    "read_model_info",
]
