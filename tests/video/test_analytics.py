"""Zones and line crossings on hand-built tracks: exact counts, directions, dwell, resets; zone files."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from visor.errors import ConfigError, InvalidInput
from visor.types.detections import Detections
from visor.video.analytics import (
    MAX_ZONES_BYTES,
    Analytics,
    Crossing,
    Line,
    Zone,
    ZoneConfig,
    load_zones,
    parse_zones,
    points_in_polygon,
)

LABELS = ("person", "bicycle", "car")
GATE = Line("gate", (100, 0), (100, 200))  # drawn top to bottom: right to left is "in"
YARD = Zone("yard", np.array([[0, 0], [100, 0], [100, 100], [0, 100]]))


def tracked(*objects: tuple[int, float, float, int]) -> Detections:
    """Detections from ``(tracker id, anchor x, anchor y, class id)``: 20x40 boxes standing on the anchor."""
    if not objects:
        return Detections.empty()
    ids, xs, ys, cls = (np.array(v) for v in zip(*objects, strict=True))
    xyxy = np.stack([xs - 10, ys - 40, xs + 10, ys], axis=1).astype(np.float32)
    return Detections(xyxy, np.full(len(ids), 0.9, np.float32), cls.astype(np.int64),
                      {"tracker_id": ids.astype(np.int64)})


def run(analytics: Analytics, frames: list[tuple], start: int = 0) -> list:
    """Feed one frame per item (a tuple of objects for :func:`tracked`); returns the FrameAnalytics."""
    return [analytics.update(tracked(*objs), frame=start + i, timestamp_s=None, labels=LABELS)
            for i, objs in enumerate(frames)]


def crossings(results) -> list[tuple[str, int, str, str, int]]:
    return [(c.line, c.tracker_id, c.class_name, c.direction, c.frame) for r in results for c in r.crossings]


def walk(tid: int, xs, y: float = 150, cls: int = 0) -> list[tuple]:
    return [((tid, x, y, cls),) for x in xs]


# ------------------------------------------------------------------------------------------------ lines


def test_a_box_walking_across_and_back_counts_out_then_in():
    a = Analytics(ZoneConfig(lines=(GATE,)))
    results = run(a, walk(1, [80, 95, 105, 120, 105, 90]))
    assert crossings(results) == [("gate", 1, "person", "out", 2), ("gate", 1, "person", "in", 5)]
    assert results[2].crossings == (Crossing("gate", 1, "person", "out", 2, None),)
    assert a.counts()["lines"] == {"gate": {"in": {"person": 1}, "out": {"person": 1}}}


def test_direction_of_a_line_drawn_left_to_right_moving_down_is_in():
    line = Line("road", (0, 100), (200, 100))
    a = Analytics(ZoneConfig(lines=(line,)))
    results = run(a, [((7, 50, y, 2),) for y in (80, 120, 90)])
    assert crossings(results) == [("road", 7, "car", "in", 1), ("road", 7, "car", "out", 2)]


def test_jitter_exactly_on_the_line_does_not_double_count():
    a = Analytics(ZoneConfig(lines=(GATE,)))
    results = run(a, walk(1, [90, 100, 90, 100, 100, 110, 100, 110, 100, 110]))
    assert crossings(results) == [("gate", 1, "person", "out", 5)]
    assert a.counts()["lines"]["gate"] == {"in": {}, "out": {"person": 1}}


def test_margin_absorbs_jitter_across_the_line():
    xs = [97, 99, 101, 99, 101, 99, 103]
    plain = crossings(run(Analytics(ZoneConfig(lines=(GATE,))), walk(1, xs)))
    assert [(d, f) for *_, d, f in plain] == [("out", 2), ("in", 3), ("out", 4), ("in", 5), ("out", 6)]
    wide = Line("gate", (100, 0), (100, 200), margin=2)
    assert crossings(run(Analytics(ZoneConfig(lines=(wide,))), walk(1, xs))) == [("gate", 1, "person", "out", 6)]


def test_passing_beyond_the_end_of_the_segment_is_no_crossing_and_moves_the_side():
    a = Analytics(ZoneConfig(lines=(GATE,)))
    # across the line's extension below y=200, up on the far side, then back through the segment
    results = run(a, [((1, 90, 250, 0),), ((1, 110, 250, 0),), ((1, 110, 150, 0),), ((1, 90, 150, 0),)])
    assert crossings(results) == [("gate", 1, "person", "in", 3)]


def test_two_classes_and_a_class_filter():
    lines = (GATE, Line("bikes", (100, 0), (100, 200), classes=("bicycle",)))
    a = Analytics(ZoneConfig(lines=lines))
    frames = [((1, 90, 150, 0), (2, 80, 150, 1), (3, 120, 150, 0)),
              ((1, 110, 150, 0), (2, 115, 150, 1), (3, 90, 150, 0)),
              ((1, 120, 150, 0), (2, 90, 150, 1))]
    results = run(a, frames)
    assert crossings(results) == [
        ("gate", 1, "person", "out", 1), ("gate", 2, "bicycle", "out", 1), ("gate", 3, "person", "in", 1),
        ("bikes", 2, "bicycle", "out", 1),
        ("gate", 2, "bicycle", "in", 2), ("bikes", 2, "bicycle", "in", 2)]
    assert a.counts()["lines"] == {
        "gate": {"in": {"bicycle": 1, "person": 1}, "out": {"bicycle": 1, "person": 1}},
        "bikes": {"in": {"bicycle": 1}, "out": {"bicycle": 1}}}


def test_class_name_in_data_wins_over_labels():
    det = tracked((1, 90, 150, 0))
    named = Detections(det.xyxy, det.confidence, det.class_id, {**det.data, "class_name": np.array(["dog"])})
    a = Analytics(ZoneConfig(lines=(GATE,)))
    a.update(named, frame=0, timestamp_s=0.0, labels=LABELS)
    moved = Detections(det.xyxy + np.float32([20, 0, 20, 0]), det.confidence, det.class_id, named.data)
    out = a.update(moved, frame=1, timestamp_s=0.04, labels=LABELS)
    assert out.crossings == (Crossing("gate", 1, "dog", "out", 1, 0.04),)


def test_a_scene_cut_between_two_frames_that_would_cross_counts_nothing():
    a = Analytics(ZoneConfig(lines=(GATE,)))
    run(a, walk(1, [90]))
    a.reset()
    after = run(a, walk(1, [110, 90]), start=1)
    assert crossings(after) == [("gate", 1, "person", "in", 2)]  # the side seen after the cut is remembered
    cut = Analytics(ZoneConfig(lines=(GATE,)))
    run(cut, walk(1, [90]))
    cut.reset()
    assert crossings(run(cut, walk(1, [110]), start=1)) == []
    assert cut.counts()["lines"]["gate"] == {"in": {}, "out": {}}


def test_an_occluded_track_still_crosses_but_a_lost_one_is_forgotten():
    frames = [((1, 90, 150, 0),), (), (), (), ((1, 110, 150, 0),)]
    assert crossings(run(Analytics(ZoneConfig(lines=(GATE,))), frames)) == [("gate", 1, "person", "out", 4)]
    assert crossings(run(Analytics(ZoneConfig(lines=(GATE,)), lost_after=2), frames)) == []


# ------------------------------------------------------------------------------------------------ zones


def test_a_zone_entered_left_and_entered_again():
    a = Analytics(ZoneConfig(zones=(YARD,)), fps=4)  # frame / 4: exact binary seconds
    frames = [
        ((1, 50, 150, 0),),                    # 0: outside
        ((1, 50, 50, 0),),                     # 1: enters
        ((1, 50, 60, 0), (2, 20, 20, 1)),      # 2: a bicycle enters too
        ((2, 30, 20, 1),),                     # 3: the person is occluded
        ((1, 50, 70, 0),),                     # 4: back, still inside; the bicycle unseen
        ((1, 50, 150, 0),),                    # 5: leaves
        ((1, 50, 90, 0),),                     # 6: enters again
    ]
    r = run(a, frames)
    assert [x.zones["yard"] for x in r] == [{}, {"person": 1}, {"bicycle": 1, "person": 1}, {"bicycle": 1},
                                            {"person": 1}, {}, {"person": 1}]
    assert [x.members["yard"] for x in r] == [(), (1,), (1, 2), (2,), (1,), (), (1,)]
    assert [x.dwell_s["yard"] for x in r] == [{}, {1: 0.0}, {1: 0.25, 2: 0.0}, {2: 0.25}, {1: 0.75}, {}, {1: 0.0}]
    totals = a.counts()["zones"]["yard"]
    # visits: person 0.75 s (finished), bicycle 0.25 s (open, unseen), person 0.0 s (open)
    assert totals == {"entries": {"bicycle": 1, "person": 2}, "max_inside": {"bicycle": 1, "person": 1},
                      "dwell_s": {"mean": round(1.0 / 3, 6), "max": 0.75, "visits": 3}}
    a.reset()  # visits end; totals stay
    assert a.counts()["zones"]["yard"] == totals
    again = run(a, [((1, 50, 90, 0),)], start=7)[0]
    assert again.dwell_s == {"yard": {1: 0.0}}
    assert a.counts()["zones"]["yard"]["entries"] == {"bicycle": 1, "person": 3}
    assert a.counts()["zones"]["yard"]["dwell_s"]["visits"] == 4


def test_timestamps_win_over_fps_and_frames_are_the_unit_without_either():
    zones = ZoneConfig(zones=(YARD,))
    a = Analytics(zones, fps=25)
    for frame, t in ((10, 1.5), (11, 2.0)):
        out = a.update(tracked((3, 50, 50, 0)), frame=frame, timestamp_s=t, labels=LABELS)
    assert out.dwell_s == {"yard": {3: 0.5}}
    b = Analytics(zones)
    r = run(b, [((3, 50, 50, 0),)] * 3)
    assert r[-1].dwell_s == {"yard": {3: 2.0}}


def test_class_filtered_zone_counts_only_its_classes_and_the_most_inside_at_once():
    people = Zone("door", [[0, 0], [100, 0], [100, 100], [0, 100]], classes=["person"])
    a = Analytics(ZoneConfig(zones=(people,)))
    r = run(a, [((1, 10, 10, 0), (2, 20, 20, 0), (3, 30, 30, 1)), ((1, 10, 10, 0), (3, 30, 30, 1))])
    assert [x.zones["door"] for x in r] == [{"person": 2}, {"person": 1}]
    assert [x.members["door"] for x in r] == [(1, 2), (1,)]
    assert a.counts()["zones"]["door"] == {"entries": {"person": 2}, "max_inside": {"person": 2},
                                           "dwell_s": {"mean": 0.5, "max": 1.0, "visits": 2}}


def test_lost_tracks_end_their_visits():
    a = Analytics(ZoneConfig(zones=(YARD,)), fps=1, lost_after=2)
    run(a, [((1, 50, 50, 0),), ((1, 50, 50, 0),), (), (), ()])
    assert a.counts()["zones"]["yard"]["dwell_s"] == {"mean": 1.0, "max": 1.0, "visits": 1}
    run(a, [((1, 50, 50, 0),)], start=5)  # the same id after it was forgotten: a new visit
    assert a.counts()["zones"]["yard"]["entries"] == {"person": 2}


def test_anchor_center_or_bottom_center():
    box = Detections(np.array([[40, 70, 60, 110]], np.float32), np.array([0.9], np.float32),
                     np.array([0]), {"tracker_id": np.array([5])})
    for anchor, inside in (("bottom_center", ()), ("center", (5,))):
        a = Analytics(ZoneConfig(zones=(YARD,), anchor=anchor))
        assert a.update(box, frame=0, timestamp_s=None, labels=LABELS).members == {"yard": inside}


def test_frame_analytics_to_dict_is_json():
    a = Analytics(ZoneConfig(zones=(YARD,), lines=(GATE,)), fps=4)
    run(a, [((1, 90, 50, 0),), ((1, 95, 60, 0),)])
    out = a.update(tracked((1, 105, 150, 0)), frame=2, timestamp_s=0.5, labels=LABELS)
    out = a.update(tracked((1, 90, 80, 0)), frame=3, timestamp_s=0.75, labels=LABELS)
    d = out.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d == {"zones": {"yard": {"person": 1}}, "members": {"yard": [1]}, "dwell_s": {"yard": {"1": 0.0}},
                 "crossings": [{"line": "gate", "tracker_id": 1, "class_name": "person", "direction": "in",
                                "frame": 3, "timestamp_s": 0.75}]}
    assert json.loads(json.dumps(a.counts())) == a.counts()


def test_empty_frames_and_bad_detections():
    a = Analytics(ZoneConfig(zones=(YARD,), lines=(GATE,)))
    empty = a.update(Detections.empty(), frame=0, timestamp_s=None, labels=LABELS)
    assert (empty.zones, empty.members, empty.dwell_s, empty.crossings) == ({"yard": {}}, {"yard": ()},
                                                                              {"yard": {}}, ())
    untracked = Detections(np.array([[0, 0, 10, 10]], np.float32), np.array([0.9], np.float32), np.array([0]))
    with pytest.raises(InvalidInput, match=r"tracked detections"):
        a.update(untracked, frame=1, timestamp_s=None, labels=LABELS)
    with pytest.raises(InvalidInput, match=r"^class id 7 has no label \(the model has 3 classes\)$"):
        a.update(tracked((1, 5, 5, 7)), frame=1, timestamp_s=None, labels=LABELS)
    with pytest.raises(ConfigError, match="fps must be a positive number"):
        Analytics(ZoneConfig(), fps=0)


def test_points_in_polygon_matches_matplotlib_on_a_concave_polygon():
    from matplotlib.path import Path

    ell = np.array([[0, 0], [60, 0], [60, 20], [20, 20], [20, 60], [0, 60]], np.float64)
    pts = np.array([[10, 10], [50, 10], [10, 50], [40, 40], [70, 10], [-1, 5], [19.5, 59.5]])
    assert points_in_polygon(pts, ell).tolist() == [True, True, True, False, False, False, True]
    rng = np.random.default_rng(0)
    cloud = rng.uniform(-10, 70, size=(5000, 2))
    assert np.array_equal(points_in_polygon(cloud, ell), Path(ell).contains_points(cloud))


# ------------------------------------------------------------------------------------------------ zone files

YAML = """\
anchor: center
zones:
  - name: yard
    polygon: [[10, 10], [300, 10], [300, 200], [10, 200]]
    classes: [person]
lines:
  - name: gate
    start: [320, 0]
    end: [320, 272]
    classes: [person, bicycle]
"""
EXPECTED = ZoneConfig(
    zones=(Zone("yard", np.array([[10, 10], [300, 10], [300, 200], [10, 200]], np.float64), ("person",)),),
    lines=(Line("gate", (320.0, 0.0), (320.0, 272.0), ("person", "bicycle")),),
    anchor="center")


def test_yaml_and_json_zone_files(tmp_path):
    import yaml

    (tmp_path / "z.yaml").write_text(YAML)
    (tmp_path / "z.json").write_text(json.dumps(yaml.safe_load(YAML)))
    for name in ("z.yaml", "z.json"):
        cfg = load_zones(tmp_path / name)
        assert cfg == EXPECTED
        assert cfg.zones[0].polygon.dtype == np.float64 and not cfg.zones[0].polygon.flags.writeable
    assert parse_zones(EXPECTED.to_dict()) == EXPECTED
    assert parse_zones({}) == ZoneConfig() and ZoneConfig().anchor == "bottom_center"
    EXPECTED.check_classes(LABELS)
    with pytest.raises(ConfigError, match=re.escape("line 'gate': the model has no class 'bicycle'.")):
        EXPECTED.check_classes(("person",))
    with pytest.raises(ConfigError, match=re.escape("zone 'yard': the model has no class 'persn'. Did you mean "
                                                    "'person'?")):
        ZoneConfig(zones=(Zone("yard", YARD.polygon, ("persn",)),)).check_classes(LABELS)


ZONE = {"name": "yard", "polygon": [[0, 0], [10, 0], [10, 10]]}
LINE = {"name": "gate", "start": [0, 0], "end": [0, 10]}


@pytest.mark.parametrize(("doc", "message"), [
    ({"zone": [ZONE]}, "unknown key 'zone' in <zones>. Did you mean 'zones'?"),
    ({"zones": [{**ZONE, "polgon": 1}]}, "unknown key 'polgon' in <zones>: zone 'yard'. Did you mean 'polygon'?"),
    ({"zones": [{"polygon": ZONE["polygon"]}]}, "missing key(s) 'name' in <zones>: zone [0]"),
    ({"zones": [{**ZONE, "polygon": [[0, 0], [10, 0]]}]},
     "<zones>: zone 'yard': polygon needs at least 3 points, got 2"),
    ({"zones": [{**ZONE, "polygon": [[0, 0], ["a", 3], [10, 10]]}]},
     "<zones>: zone 'yard': polygon point 1 must be an [x, y] pair of numbers, got ['a', 3]"),
    ({"zones": [{**ZONE, "polygon": [[0, 0], [5, True], [10, 10]]}]},
     "<zones>: zone 'yard': polygon point 1 must be an [x, y] pair of numbers, got [5, True]"),
    ({"zones": [{**ZONE, "polygon": [[0, 0], [5, 5, 5], [10, 10]]}]},
     "<zones>: zone 'yard': polygon point 1 must be an [x, y] pair of numbers, got [5, 5, 5]"),
    ({"zones": [{**ZONE, "polygon": [[0, 0], [5, float("nan")], [10, 10]]}]},
     "<zones>: zone 'yard': polygon point 1 must be finite, got [5, nan]"),
    ({"zones": [{**ZONE, "polygon": [[0, 0], [5, 5], [10, 10]]}]}, "<zones>: zone 'yard': polygon has zero area"),
    ({"zones": [{**ZONE, "polygon": "square"}]},
     "<zones>: zone 'yard': polygon must be a list of [x, y] points, got 'square'"),
    ({"zones": [ZONE, {**ZONE}]}, "<zones>: zone name 'yard' is used twice"),
    ({"lines": [LINE, LINE]}, "<zones>: line name 'gate' is used twice"),
    ({"zones": [{**ZONE, "name": ""}]}, "<zones>: zone name must be a non-empty string, got ''"),
    ({"zones": [{**ZONE, "classes": "person"}]},
     "<zones>: zone 'yard': classes must be a list of class names, got 'person'"),
    ({"zones": [{**ZONE, "classes": []}]},
     "<zones>: zone 'yard': classes is empty (leave it out to count every class)"),
    ({"zones": {"yard": ZONE}}, "<zones>: 'zones' must be a list, got dict"),
    ({"zones": ["yard"]}, "<zones>: zones[0] must be a mapping, got str"),
    ({"lines": [{**LINE, "end": [0, 0]}]}, "<zones>: line 'gate': start and end are the same point [0.0, 0.0]"),
    ({"lines": [{**LINE, "start": 5}]}, "<zones>: line 'gate': start must be an [x, y] pair of numbers, got 5"),
    ({"lines": [{**LINE, "margin": -1}]}, "<zones>: line 'gate': margin must be a number >= 0, got -1"),
    ({"lines": [{"name": "gate", "start": [0, 0]}]}, "missing key(s) 'end' in <zones>: line 'gate'"),
    ({"anchor": "bottom"}, "<zones>: anchor must be one of 'bottom_center', 'center', got 'bottom'. "
                           "Did you mean 'bottom_center'?"),
    (["yard"], "<zones>: expected a mapping with 'zones' and/or 'lines', got list"),
])
def test_bad_zone_documents(doc, message):
    with pytest.raises(ConfigError) as e:
        parse_zones(doc)
    assert str(e.value) == message


def test_bad_zone_files(tmp_path):
    def error(name: str, content: str | bytes) -> str:
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        with pytest.raises(ConfigError) as e:
            load_zones(path)
        return str(e.value).replace(str(tmp_path), "T")

    too_big = f"zones file T/big.yaml is larger than {MAX_ZONES_BYTES} bytes"
    assert error("big.yaml", "#" * (MAX_ZONES_BYTES + 1)) == too_big
    assert error("bad.yaml", "zones: [[1, 2]\n").startswith("zones file T/bad.yaml is not valid YAML: while parsing")
    assert error("bin.yml", b"\xff\xfe\x00zones") == "zones file T/bin.yml is not UTF-8 text"
    assert error("bad.json", "{zones: 1}").startswith("zones file T/bad.json is not valid JSON: ")
    assert error("z.txt", YAML) == "zones file T/z.txt must be .yaml, .yml or .json"
    assert error("empty.yaml", "") == "zones file T/empty.yaml is empty; expected a mapping with 'zones' and/or 'lines'"
    assert error("list.yaml", "- 1\n") == ("zones file T/list.yaml: expected a mapping with 'zones' and/or 'lines', "
                                           "got list")
    alias = "p: &p [[0, 0], [9, 0], [9, 9]]\nzones:\n  - {name: a, polygon: *p}\n"
    assert error("alias.yaml", alias) == "zones file T/alias.yaml: YAML aliases (*name) are not supported in zone files"
    assert error("deep.yaml", "[" * 100 + "]" * 100) == ("zones file T/deep.yaml nests arrays or objects more than "
                                                        "64 deep")
    assert error("unknown.yaml", "zones:\n  - name: yard\n    polygn: []\n") == (
        "unknown key 'polygn' in zones file T/unknown.yaml: zone 'yard'. Did you mean 'polygon'?")
    with pytest.raises(ConfigError, match=r"^no zones file at .*missing\.yaml$"):
        load_zones(tmp_path / "missing.yaml")
    (tmp_path / "dir.yaml").mkdir()
    with pytest.raises(ConfigError, match=r"dir\.yaml is not a file$"):
        load_zones(tmp_path / "dir.yaml")


def test_zone_and_line_values():
    z = Zone("a", [[0, 0], [4, 0], [4, 4]], ["car", "car", "bus"])
    assert z.classes == ("car", "bus")
    assert z == Zone("a", np.array([[0, 0], [4, 0], [4, 4]]), ("car", "bus")) and hash(z) == hash(Zone(**{
        "name": "a", "polygon": [[0.0, 0.0], [4.0, 0.0], [4.0, 4.0]], "classes": ("car", "bus")}))
    assert z != Zone("a", [[0, 0], [4, 0], [4, 5]], ["car", "bus"])
    with pytest.raises(ConfigError, match=r"polygon must be a \(K, 2\) array of numbers"):
        Zone("a", np.zeros((4, 3)))
    assert GATE.side(np.array([[90.0, 5], [110, 5], [100, 500]])).tolist() == [1, -1, 0]
