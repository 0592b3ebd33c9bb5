"""An SSD detector with the TFLite_Detection_PostProcess op, made the way TensorFlow Object
Detection's TF2 exporter makes one (export_tflite_graph_lib_tf2.py): a tf.function
``experimental_implements`` "TFLite_Detection_PostProcess" with the op's attributes, which
the TFLite converter fuses into the custom op that every TFLite runtime carries.

The network in front is exact rather than trained: it finds the box of the strongly green
pixels (tests/scenes.py's object frame) and encodes it, TF-OD style (y, x, h, w scaled by
10, 10, 5, 5), against the nearest of a 4 x 4 grid of anchors, with a high class score
there and a low one elsewhere; the op decodes, thresholds and suppresses. So the right
answer is known: the frame's box, labelled "cat". Built once, cached under build/.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from tests.models import CACHE

HEIGHT, WIDTH = 120, 160
GRID = 4  # anchors per side
SCALES = (10.0, 10.0, 5.0, 5.0)  # y, x, h, w: TF-OD's faster_rcnn_box_coder defaults


def ssd_detector() -> Path:
    """The cached .tflite (input [1, 120, 160, 3] float RGB 0..255, outputs boxes, classes,
    scores, count), with a sidecar giving its labels and preprocessing beside it."""
    digest = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
    folder = CACHE / f"ssd-op-detector-{digest}"
    model = folder / "ssd.tflite"
    if model.exists():
        return model
    data = _convert()
    tmp = folder.with_name(folder.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "ssd.tflite").write_bytes(data)
    (tmp / "ssd.yaml").write_text(
        "task: detection\n"
        "labels: [cat]\n"
        "preprocess: {color: rgb, input_range: [0.0, 255.0], resize: stretch}\n"
        "postprocess: {decoder: ssd_postprocess, threshold: 0.5}\n"
    )
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    tmp.rename(folder)
    return model


def _convert() -> bytes:
    import numpy as np
    import tensorflow as tf

    n = GRID * GRID
    centers = (np.arange(GRID, dtype=np.float32) + 0.5) / GRID
    ya, xa = np.meshgrid(centers, centers, indexing="ij")
    anchors = np.stack(
        [ya.ravel(), xa.ravel(), np.full(n, 1.0 / GRID), np.full(n, 1.0 / GRID)], axis=1
    ).astype(np.float32)  # (ycenter, xcenter, h, w), as TF-OD's anchors tensor
    attrs = {
        "max_detections": ("i", 10), "max_classes_per_detection": ("i", 1),
        "detections_per_class": ("i", 10), "use_regular_nms": ("b", "false"),
        "nms_score_threshold": ("f", 0.3), "nms_iou_threshold": ("f", 0.5),
        "num_classes": ("i", 1), "y_scale": ("f", SCALES[0]), "x_scale": ("f", SCALES[1]),
        "h_scale": ("f", SCALES[2]), "w_scale": ("f", SCALES[3]),
    }  # fmt: skip
    implements = " ".join(
        ['name: "TFLite_Detection_PostProcess"']
        + [f'attr {{ key: "{k}" value {{ {t}: {v} }} }}' for k, (t, v) in attrs.items()]
    )

    @tf.function(experimental_implements=implements)
    def postprocess(
        box_encodings: tf.Tensor, class_predictions: tf.Tensor, anchor_boxes: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        # what TF-OD's dummy_post_processing returns: replaced by the fused op
        boxes = tf.constant(0.0, dtype=tf.float32, name="boxes")
        scores = tf.constant(0.0, dtype=tf.float32, name="scores")
        classes = tf.constant(0.0, dtype=tf.float32, name="classes")
        num = tf.constant(0.0, dtype=tf.float32, name="num_detections")
        return boxes, classes, scores, num

    @tf.function(input_signature=[tf.TensorSpec([1, HEIGHT, WIDTH, 3], tf.float32)])
    def detect(image: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        r, g, b = image[..., 0], image[..., 1], image[..., 2]
        green = tf.cast(g - tf.maximum(r, b) > 120.0, tf.float32)[0]  # [H, W]
        rows, cols = tf.reduce_max(green, axis=1), tf.reduce_max(green, axis=0)
        ys, xs = tf.range(HEIGHT, dtype=tf.float32), tf.range(WIDTH, dtype=tf.float32)
        y0 = tf.reduce_min(tf.where(rows > 0, ys, float(HEIGHT))) / HEIGHT
        y1 = tf.reduce_max(tf.where(rows > 0, ys + 1.0, 0.0)) / HEIGHT
        x0 = tf.reduce_min(tf.where(cols > 0, xs, float(WIDTH))) / WIDTH
        x1 = tf.reduce_max(tf.where(cols > 0, xs + 1.0, 0.0)) / WIDTH
        found = tf.reduce_max(green)
        cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
        h, w = tf.maximum(y1 - y0, 1e-3), tf.maximum(x1 - x0, 1e-3)
        table = tf.constant(anchors)
        nearest = tf.argmin(tf.square(table[:, 0] - cy) + tf.square(table[:, 1] - cx))
        encoded = tf.stack([
            (cy - table[:, 0]) / table[:, 2] * SCALES[0],
            (cx - table[:, 1]) / table[:, 3] * SCALES[1],
            tf.math.log(h / table[:, 2]) * SCALES[2] + 0.0 * table[:, 0],
            tf.math.log(w / table[:, 3]) * SCALES[3] + 0.0 * table[:, 0],
        ], axis=1)  # fmt: skip
        hot = tf.one_hot(nearest, n) * found * 0.95
        scores = tf.stack([1.0 - hot, hot], axis=1)  # background first, as TF-OD's
        return postprocess(encoded[None], scores[None], table)

    import tempfile

    module = tf.Module()
    module.detect = detect
    with tempfile.TemporaryDirectory() as work:  # converted from a SavedModel, as TF-OD's
        tf.saved_model.save(module, work, signatures={"serving_default": detect})
        converter = tf.lite.TFLiteConverter.from_saved_model(work)
        converter.allow_custom_ops = True
        return bytes(converter.convert())
