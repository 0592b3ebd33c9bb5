"""The built-in decoders (:mod:`.builtin`, registered in the ``edge.decoders`` entry point
group like any plugin) and what they are made of: SSD anchors and their MediaPipe presets
(:mod:`.anchors`), anchor-box decoding with weighted NMS (:mod:`.ssd_anchors`),
segmentation masks (:mod:`.segmentation`) and landmarks (:mod:`.keypoints`).

Nothing is imported here, so ``edge.postprocess.config`` can read the anchor options
without loading the decoders."""
