"""Watch rules: zone, line and presence rules, min_frames, cooldowns, scene cuts, the rules file."""

from __future__ import annotations

import json
from datetime import UTC
from types import SimpleNamespace

import numpy as np
import pytest

from visor.errors import ConfigError, ImageNotFound
from visor.types import Detections
from visor.video.rules import Event, Rule, RuleEngine, load_rules, parse_rules


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def dets(*tracks: tuple[int, str]) -> Detections:
    """One box per (tracker id, class name); box i at x = 10 * i."""
    n = len(tracks)
    xyxy = np.array([[10 * i, 0, 10 * i + 5, 5] for i in range(n)], np.float32).reshape(n, 4)
    return Detections(xyxy, np.full(n, 0.9, np.float32), np.zeros(n, np.int64),
                      data={"tracker_id": np.array([t for t, _ in tracks], np.int64),
                            "class_name": np.array([c for _, c in tracks], dtype=object)})


def frame(index: int, *tracks: tuple[int, str], members: dict | None = None, crossings: tuple = (),
          scene_cut: bool = False) -> SimpleNamespace:
    analytics = SimpleNamespace(members=members or {}, crossings=crossings)
    return SimpleNamespace(index=index, timestamp_s=index / 25, detections=dets(*tracks), analytics=analytics,
                           scene_cut=scene_cut, scene=0)


def crossing(tid: int, cls: str, direction: str, line: str = "gate", at: int = 0) -> SimpleNamespace:
    return SimpleNamespace(line=line, tracker_id=tid, class_name=cls, direction=direction, frame=at,
                           timestamp_s=None)


def fired(engine: RuleEngine, frames) -> list[tuple[int, int]]:
    """(frame, tracker id) of each event over ``frames``."""
    return [(e.frame, e.tracker_id) for f in frames for e in engine.update(f)]


def test_zone_rule_fires_on_the_min_frames_th_consecutive_frame_inside():
    engine = RuleEngine([Rule("yard", zone="yard", classes=("person",), min_frames=3)], source="cam")
    out = []
    for i in range(5):
        events = engine.update(frame(i, (7, "person"), members={"yard": (7,)}))
        out.append(len(events))
        if events:
            e = events[0]
            assert (e.rule, e.kind, e.zone, e.line, e.direction, e.tracker_id) == ("yard", "zone", "yard", None,
                                                                                   None, 7)
            assert (e.class_name, e.frame, e.timestamp_s, e.source) == ("person", 2, 2 / 25, "cam")
            assert e.confidence == pytest.approx(0.9) and e.box == (0.0, 0.0, 5.0, 5.0)
            assert e.time.tzinfo is UTC and len(e.id) == 32
    assert out == [0, 0, 1, 0, 0]  # the 3rd frame inside, then once per stay


def test_zone_streak_must_be_consecutive():
    engine = RuleEngine([Rule("yard", zone="yard", min_frames=3)])
    inside = {"yard": (7,)}
    frames = [frame(0, (7, "person"), members=inside), frame(1, (7, "person"), members=inside),
              frame(2, (7, "person")),  # outside for one frame: the streak breaks
              frame(3, (7, "person"), members=inside), frame(4, (7, "person"), members=inside),
              frame(5, (7, "person"), members=inside)]
    assert fired(engine, frames) == [(5, 7)]


def test_cooldown_per_track_suppresses_then_allows():
    clock = Clock()
    engine = RuleEngine([Rule("yard", zone="yard", min_frames=1, cooldown_s=30)], clock=clock)
    inside, i = {"yard": (7,)}, iter(range(100))
    assert fired(engine, [frame(next(i), (7, "person"), members=inside)]) == [(0, 7)]
    clock.t += 10  # leaves and comes back within the cooldown: nothing
    assert fired(engine, [frame(next(i), (7, "person")), frame(next(i), (7, "person"), members=inside)]) == []
    # another track is not held back by track 7's cooldown
    assert fired(engine, [frame(next(i), (7, "person"), (8, "person"), members={"yard": (7, 8)})]) == [(3, 8)]
    clock.t += 19.9  # still within 30 s of the first event: track 7, still inside, waits
    assert fired(engine, [frame(next(i), (7, "person"), members=inside)]) == []
    clock.t += 0.1  # 30 s after: the stay that began in the cooldown fires now, once
    assert fired(engine, [frame(next(i), (7, "person"), members=inside)]) == [(5, 7)]
    clock.t += 100  # still the same stay: no repeat
    assert fired(engine, [frame(next(i), (7, "person"), members=inside)]) == []
    # leaves, comes back after the cooldown: fires again
    assert fired(engine, [frame(next(i), (7, "person")), frame(next(i), (7, "person"), members=inside)]) == [(8, 7)]


def test_rule_cooldown_spaces_events_of_any_track():
    clock = Clock()
    engine = RuleEngine([Rule("any", rule_cooldown_s=5, cooldown_s=0)], clock=clock)
    assert fired(engine, [frame(0, (1, "car"), (2, "car"))]) == [(0, 1)]  # track 2 held back by the rule's gap
    clock.t += 4.9
    assert fired(engine, [frame(1, (1, "car"), (2, "car"))]) == []
    clock.t += 0.1
    assert fired(engine, [frame(2, (1, "car"), (2, "car"))]) == [(2, 2)]  # track 1 fired this stay already


def test_line_rule_direction_and_classes_filter():
    engine = RuleEngine([Rule("gate-in", line="gate", direction="in", classes=("person", "bicycle")),
                         Rule("gate-any", line="gate", cooldown_s=0), Rule("other", line="fence")])
    f = frame(4, (1, "person"), (2, "car"), (3, "bicycle"),
              crossings=(crossing(1, "person", "in"), crossing(2, "car", "in"), crossing(3, "bicycle", "out")))
    events = engine.update(f)
    assert [(e.rule, e.tracker_id, e.direction, e.class_name, e.kind) for e in events] == [
        ("gate-in", 1, "in", "person", "line"), ("gate-any", 1, "in", "person", "line"),
        ("gate-any", 2, "in", "car", "line"), ("gate-any", 3, "out", "bicycle", "line")]
    assert events[3].box == (20.0, 0.0, 25.0, 5.0) and events[0].line == "gate" and events[0].zone is None
    # crossing back at once: gate-any has no cooldown; gate-in filters "out"
    events = engine.update(frame(5, (1, "person"), crossings=(crossing(1, "person", "out"),)))
    assert [(e.rule, e.direction) for e in events] == [("gate-any", "out")]
    # the same track crossing in again within gate-in's 30 s cooldown: not again
    events = engine.update(frame(6, (1, "person"), crossings=(crossing(1, "person", "in"),)))
    assert [e.rule for e in events] == ["gate-any"]


def test_line_rule_min_frames_is_the_tracks_age():
    engine = RuleEngine([Rule("gate", line="gate", min_frames=3)])
    cross = (crossing(1, "person", "in"),)
    assert fired(engine, [frame(0, (1, "person")), frame(1, (1, "person"), crossings=cross)]) == []
    assert fired(engine, [frame(2, (1, "person"), crossings=cross)]) == [(2, 1)]


def test_presence_rule_and_classes_filter():
    engine = RuleEngine([Rule("dog", classes=("dog",), min_frames=2), Rule("anything", min_frames=1)])
    first = engine.update(frame(0, (1, "dog"), (2, "person")))
    assert [(e.rule, e.tracker_id, e.kind) for e in first] == [("anything", 1, "presence"),
                                                              ("anything", 2, "presence")]
    second = engine.update(frame(1, (1, "dog"), (2, "person")))
    assert [(e.rule, e.tracker_id, e.class_name) for e in second] == [("dog", 1, "dog")]


def test_class_name_from_labels_when_detections_carry_none():
    d = Detections(np.zeros((1, 4), np.float32), np.ones(1, np.float32), np.array([2]),
                   data={"tracker_id": np.array([5])})
    engine = RuleEngine([Rule("car", classes=("car",))], labels=("person", "bicycle", "car"))
    f = SimpleNamespace(index=0, timestamp_s=None, detections=d, analytics=None, scene_cut=False)
    assert [(e.class_name, e.timestamp_s) for e in engine.update(f)] == [("car", None)]


def test_scene_cut_clears_consecutive_counts():
    engine = RuleEngine([Rule("yard", zone="yard", min_frames=3)])
    inside = {"yard": (7,)}
    frames = [frame(0, (7, "person"), members=inside), frame(1, (7, "person"), members=inside),
              frame(2, (7, "person"), members=inside, scene_cut=True),  # the count starts again here
              frame(3, (7, "person"), members=inside), frame(4, (7, "person"), members=inside)]
    assert fired(engine, frames) == [(4, 7)]
    engine2 = RuleEngine([Rule("yard", zone="yard", min_frames=3)])
    fired(engine2, frames[:2])
    engine2.reset()
    assert fired(engine2, [frame(2, (7, "person"), members=inside)]) == []


def test_no_analytics_no_zone_or_line_events():
    engine = RuleEngine([Rule("yard", zone="yard"), Rule("gate", line="gate")])
    f = SimpleNamespace(index=0, timestamp_s=0.0, detections=dets((1, "person")), analytics=None, scene_cut=False)
    assert engine.update(f) == []


def test_event_to_dict_is_json_and_round_trips():
    engine = RuleEngine([Rule("any")], source="rtsp://cam/1")
    (event,) = engine.update(frame(3, (np.int64(9), "person")))
    d = event.to_dict()
    text = json.dumps(d)
    assert json.loads(text) == d
    assert d["tracker_id"] == 9 and type(d["tracker_id"]) is int and d["time"].endswith("+00:00")
    assert d["box"] == [0.0, 0.0, 5.0, 5.0] and d["kind"] == "presence" and d["source"] == "rtsp://cam/1"
    assert Event.from_dict(d) == event


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"name": "a/b"}, "rule name"),
    ({"name": "r", "zone": "z", "line": "l"}, "not both"),
    ({"name": "r", "direction": "in"}, "direction needs a line"),
    ({"name": "r", "line": "l", "direction": "up"}, "direction must be"),
    ({"name": "r", "min_frames": 0}, "min_frames"),
    ({"name": "r", "cooldown_s": -1}, "cooldown_s"),
    ({"name": "r", "classes": "person"}, "classes"),
    ({"name": "r", "classes": ()}, "classes"),
])
def test_rule_validation(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Rule(**kwargs)


# --------------------------------------------------------------------------- the rules file

DOC = {
    "zones": [{"name": "yard", "polygon": [[0, 0], [100, 0], [100, 100], [0, 100]]}],
    "lines": [{"name": "gate", "start": [50, 0], "end": [50, 100]}],
    "rules": [{"name": "in-yard", "zone": "yard", "classes": ["person"], "min_frames": 5, "cooldown_s": 60},
              {"name": "gate-in", "line": "gate", "direction": "in"}],
    "webhook": {"url": "http://127.0.0.1:9/hook", "secret_env": "VISOR_TEST_SECRET", "max_attempts": 3},
    "mqtt": {"host": "broker.local", "topic": "home/visor", "password_env": "VISOR_TEST_MQTT"},
}


@pytest.fixture
def analytics():
    return pytest.importorskip("visor.video.analytics")


def test_load_rules_yaml_and_json(tmp_path, analytics):
    yaml = pytest.importorskip("yaml")
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(DOC))
    (tmp_path / "r.json").write_text(json.dumps(DOC))
    for name in ("r.yaml", "r.json"):
        config = load_rules(tmp_path / name)
        assert [z.name for z in config.zones.zones] == ["yard"] and [ln.name for ln in config.zones.lines] == ["gate"]
        assert config.rules == (Rule("in-yard", zone="yard", classes=("person",), min_frames=5, cooldown_s=60),
                                Rule("gate-in", line="gate", direction="in"))
        assert config.webhook.url == "http://127.0.0.1:9/hook" and config.webhook.max_attempts == 3
        assert config.webhook.secret_env == "VISOR_TEST_SECRET"
        assert (config.mqtt.host, config.mqtt.topic, config.mqtt.port) == ("broker.local", "home/visor", 1883)


@pytest.mark.parametrize(("change", "message"), [
    ({"rules": [{"name": "r", "zone": "yrad"}]}, r"names zone 'yrad'.*Did you mean 'yard'"),
    ({"rules": [{"name": "r", "line": "fence"}]}, r"names line 'fence'"),
    ({"rules": [{"name": "r", "min_frame": 3}]}, r"unknown key 'min_frame'.*Did you mean 'min_frames'"),
    ({"rules": [{"name": "r"}, {"name": "r"}]}, "two rules are named 'r'"),
    ({"rules": []}, "non-empty list"),
    ({"rule": []}, r"unknown key 'rule'.*Did you mean 'rules'"),
    ({"webhook": {"url": "file:///etc/passwd"}}, "http:// or https://"),
    ({"webhook": {"url": "http://user:pw@host/x"}}, "credentials"),
    ({"webhook": {"url": "http://h/x", "max_attempts": 0}}, "max_attempts"),
    ({"webhook": {"url": "http://h/x", "secret": "abc"}}, r"unknown key 'secret'.*secret_env"),
    ({"mqtt": {"host": "h", "topic": "a/#"}}, "wildcards"),
    ({"mqtt": {"host": "h", "password": "pw"}}, r"unknown key 'password'.*password_env"),
])
def test_parse_rules_refuses_bad_documents(change, message, analytics):
    doc = {**DOC, **change}
    with pytest.raises(ConfigError, match=message):
        parse_rules(doc, source="rules.yaml")


def test_load_rules_bad_files(tmp_path):
    with pytest.raises(ImageNotFound, match="rules file not found"):
        load_rules(tmp_path / "missing.yaml")
    (tmp_path / "r.txt").write_text("rules: []")
    with pytest.raises(ConfigError, match=r"\.yaml, \.yml or \.json"):
        load_rules(tmp_path / "r.txt")
    (tmp_path / "big.yaml").write_bytes(b"#" * (1024 * 1024 + 1))
    with pytest.raises(ConfigError, match="larger than"):
        load_rules(tmp_path / "big.yaml")
    (tmp_path / "bad.yaml").write_text("rules: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_rules(tmp_path / "bad.yaml")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_rules(tmp_path / "list.json")
    (tmp_path / "tag.yaml").write_text("rules: !!python/object/apply:os.system ['true']")
    with pytest.raises(ConfigError, match="not valid YAML"):  # safe_load: no code from a rules file
        load_rules(tmp_path / "tag.yaml")


def test_with_real_analytics_line_and_zone(analytics):
    """The engine on :class:`visor.video.analytics.Analytics` output: a person walks right to left across a
    top-to-bottom line ("in" by analytics' convention) and into a zone left of it."""
    config = analytics.parse_zones({
        "zones": [{"name": "left", "polygon": [[0, 0], [50, 0], [50, 100], [0, 100]]}],
        "lines": [{"name": "gate", "start": [50, 0], "end": [50, 100]}]})
    counter = analytics.Analytics(config, fps=25)
    engine = RuleEngine([Rule("gate-in", line="gate", direction="in"), Rule("gate-out", line="gate", direction="out"),
                         Rule("left", zone="left", min_frames=2)], source="synthetic")
    events = []
    for i, x in enumerate([80, 70, 60, 40, 30, 20]):  # the box's bottom centre crosses x = 50 at frame 3
        d = Detections(np.array([[x - 5, 40, x + 5, 60]], np.float32), np.array([0.8], np.float32),
                       np.array([0]), data={"tracker_id": np.array([1]), "class_name": np.array(["person"])})
        stats = counter.update(d, frame=i, timestamp_s=i / 25, labels=("person",))
        tracked = SimpleNamespace(index=i, timestamp_s=i / 25, detections=d, analytics=stats, scene_cut=False)
        events += [(e.rule, e.frame, e.direction) for e in engine.update(tracked)]
    assert events == [("gate-in", 3, "in"), ("left", 4, None)]
