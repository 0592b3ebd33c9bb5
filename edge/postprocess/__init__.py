"""Turn model outputs into results: classification top-k, SSD and YOLO detection with
NMS, regression values and anomaly scores, with boxes mapped back to source pixels."""

from edge.postprocess.config import PostprocessConfig, Task
from edge.postprocess.detection import batched_nms, box_iou, decode_ssd, decode_yolo, nms
from edge.postprocess.factory import Postprocess, check_outputs, make_postprocess
from edge.postprocess.results import Detection, Result, jsonable
from edge.postprocess.scores import anomaly_score, classify, label_for, regression_value

__all__ = [
    "Detection",
    "Postprocess",
    "PostprocessConfig",
    "Result",
    "Task",
    "anomaly_score",
    "batched_nms",
    "box_iou",
    "check_outputs",
    "classify",
    "decode_ssd",
    "decode_yolo",
    "jsonable",
    "label_for",
    "make_postprocess",
    "nms",
    "regression_value",
]
