"""Video: tracking detections across frames, zones and line counts, annotated video, live streams and events.

Modules are imported on use (``from visor.video.track import track``); nothing is imported here.
"""
