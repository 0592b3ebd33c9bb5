"""The tracker and the events it makes, on detection sequences whose right answer is known."""

from __future__ import annotations

import numpy as np

from edge.postprocess.results import Detection, Result
from edge.tracking.config import TrackingSettings
from edge.tracking.events import EventBuilder
from edge.tracking.tracker import Tracker, iou_matrix


def _cat(x: float, score: float = 0.9, label: str = "cat", class_id: int = 0) -> Detection:
    return Detection(label, class_id, score, (x, 100.0, x + 50.0, 150.0))


def _frame(seq: int, detections: tuple[Detection, ...], stream: str = "a") -> Result:
    return Result(seq, seq / 10.0, "video:x", "detection_yolo", detections=detections,
                  meta={"stream": stream})  # fmt: skip


def test_iou_matrix_against_hand_computed_values() -> None:
    a = np.array([[0, 0, 10, 10], [0, 0, 5, 5]], float)
    b = np.array([[5, 5, 15, 15], [0, 0, 10, 10]], float)
    assert np.allclose(iou_matrix(a, b), [[25 / 175, 1.0], [0.0, 0.25]])


def test_one_object_crossing_is_one_track_new_then_end() -> None:
    tracker = Tracker(TrackingSettings(min_hits=2, max_missed=3))
    changes = []
    for i in range(20):  # 8 px a frame: IoU of consecutive boxes is 0.72
        changes += [(i, kind, t.id) for kind, t in tracker.update([_cat(8.0 * i)], i / 10)]
    for i in range(20, 25):
        changes += [(i, kind, t.id) for kind, t in tracker.update([], i / 10)]
    kinds = [(i, kind) for i, kind, _ in changes if kind != "update"]
    assert kinds == [(1, "new"), (22, "end")]  # confirmed on its 2nd frame, 3 misses: end
    assert {track_id for *_, track_id in changes} == {1}


def test_a_low_score_frame_keeps_the_id_and_labels_do_not_mix() -> None:
    tracker = Tracker(TrackingSettings(min_hits=1, high_score=0.5, low_score=0.1))
    scores = [0.9, 0.9, 0.3, 0.2, 0.9]  # the object fades under the threshold for two frames
    ids = set()
    for i, score in enumerate(scores):
        dog = _cat(300.0 - 8 * i, label="dog", class_id=1)
        for _, track in tracker.update([_cat(8.0 * i, score), dog], i / 10):
            ids.add((track.label, track.id))
    assert ids == {("cat", 1), ("dog", 2)}
    cat = next(t for t in tracker.tracks if t.label == "cat")
    assert cat.hits == 5 and cat.best_score == 0.9


def test_events_rate_limit_updates_and_end_with_the_stream() -> None:
    builder = EventBuilder(tracking=TrackingSettings(update_interval_s=1.0))
    events = []
    for i in range(30):  # 3 s at 10 fps
        events += builder.feed(_frame(i, (_cat(4.0 * i),)))
    kinds = [(e.type, e.result.frame_seq if e.result else None) for e in events]
    assert kinds == [("new", 1), ("update", 11), ("update", 21)]
    (end,) = builder.finish("a")
    assert end.type == "end" and end.stream == "a" and end.object is not None
    assert end.object["id"] == 1 and end.object["frames"] == 30 and end.object["ended"]
    assert end.object["duration_s"] == 2.9 and end.object["box"] == [116.0, 100.0, 166.0, 150.0]
    assert builder.finish("a") == []


def test_classification_events_on_change_of_the_top_label() -> None:
    builder = EventBuilder(min_score=0.5)
    tops = [("cat", 0.9), ("cat", 0.8), ("dog", 0.7), ("dog", 0.3), ("dog", 0.9), ("dog", 0.9)]
    events = []
    for i, top in enumerate(tops):
        result = Result(i, float(i), "cam", "classification", top=(top,), meta={"stream": "s"})
        events += builder.feed(result)
    changes = [(e.result.frame_seq, e.previous, e.labels) for e in events if e.result]
    # a top score under min_score is no label: dog, nothing, dog again
    assert changes == [(0, (), ("cat",)), (2, ("cat",), ("dog",)), (3, ("dog",), ()),
                       (4, (), ("dog",))]  # fmt: skip


def test_regression_and_anomaly_are_reported_as_before() -> None:
    builder = EventBuilder(notable=lambda r: bool(r.anomaly))
    normal = Result(0, 0.0, "s", "anomaly", value=0.1, anomaly=False)
    odd = Result(1, 1.0, "s", "anomaly", value=0.9, anomaly=True)
    assert builder.feed(normal) == [] and [e.type for e in builder.feed(odd)] == ["frame"]
    assert [e.type for e in EventBuilder(mode="all").feed(normal)] == ["frame"]


def test_the_daemon_loads_the_tracker_only_for_a_tracked_detector() -> None:
    import subprocess
    import sys

    code = (
        "import sys, edge.daemon.daemon, edge.mqtt, edge.cli.main; "
        "print('edge.tracking.tracker' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_segmentation_events_on_change_of_the_classes_present() -> None:
    builder = EventBuilder()
    shown = [(("person", 0.3),), (("person", 0.2), ("dog", 0.1)), (("dog", 0.1), ("person", 0.2))]
    events = []
    for i, areas in enumerate(shown):
        events += builder.feed(Result(i, float(i), "cam", "segmentation", areas=areas))
    assert [(e.previous, e.labels) for e in events] == [
        ((), ("person",)),
        (("person",), ("dog", "person")),
    ]  # the third frame shows the same classes: no event
