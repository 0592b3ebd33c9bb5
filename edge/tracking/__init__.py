"""Tracked objects and events on change: detections followed across frames
(``tracker``: ByteTrack's two-stage IoU association, numpy only) and the events a
stream's results make (``events``: an object's new / update / end, a classification's
change of top label). Imports postprocess results and numpy only; the daemon imports
the tracker only when a detection model is tracked.
"""
