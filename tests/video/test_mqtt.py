"""MQTT events through paho-mqtt against a minimal MQTT 3.1.1 broker stub on loopback."""

from __future__ import annotations

import builtins
import json
import socket
import struct
import threading
import time
from datetime import UTC, datetime

import pytest

from visor.errors import ConfigError
from visor.video.mqtt import INSTALL_HINT, MqttConfig, MqttPublisher, password_from_env
from visor.video.rules import Event

pytest.importorskip("paho.mqtt.client")


def event(rule: str = "person-in-yard", i: int = 0) -> Event:
    return Event(id=f"{i:032x}", rule=rule, kind="zone", class_name="person", tracker_id=4, frame=i,
                 timestamp_s=None, time=datetime(2026, 1, 2, tzinfo=UTC), source="rtsp://cam", zone="yard",
                 line=None, direction=None, confidence=0.5, box=(0.0, 1.0, 2.0, 3.0))


def _read_exact(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError
        data += chunk
    return data


def _read_packet(conn: socket.socket) -> tuple[int, int, bytes]:
    first = _read_exact(conn, 1)[0]
    length, shift = 0, 0
    while True:  # the remaining length: 7 bits per byte, high bit = more
        byte = _read_exact(conn, 1)[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return first >> 4, first & 0x0F, _read_exact(conn, length)


def _string(data: bytes, at: int) -> tuple[str, int]:
    (n,) = struct.unpack_from("!H", data, at)
    return data[at + 2:at + 2 + n].decode(), at + 2 + n


class Broker:
    """Accepts CONNECT (recording client id, user name and password), answers CONNACK, PUBACK for QoS 1
    and PINGRESP; records each PUBLISH as (topic, qos, payload)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.connects: list[dict] = []
        self.published: list[tuple[str, int, bytes]] = []
        self.got = threading.Condition()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def _client(self, conn: socket.socket) -> None:
        with conn:
            try:
                while True:
                    kind, flags, body = _read_packet(conn)
                    if kind == 1:  # CONNECT
                        proto, at = _string(body, 0)
                        level, cflags = body[at], body[at + 1]
                        at += 4  # level, flags, keepalive
                        client_id, at = _string(body, at)
                        user = password = None
                        if cflags & 0x80:
                            user, at = _string(body, at)
                        if cflags & 0x40:
                            password, at = _string(body, at)
                        self.connects.append({"protocol": proto, "level": level, "client_id": client_id,
                                              "username": user, "password": password})
                        conn.sendall(b"\x20\x02\x00\x00")
                    elif kind == 3:  # PUBLISH
                        qos = (flags >> 1) & 3
                        topic, at = _string(body, 0)
                        if qos:
                            (mid,) = struct.unpack_from("!H", body, at)
                            at += 2
                            conn.sendall(b"\x40\x02" + struct.pack("!H", mid))
                        with self.got:
                            self.published.append((topic, qos, body[at:]))
                            self.got.notify_all()
                    elif kind == 12:  # PINGREQ
                        conn.sendall(b"\xd0\x00")
                    elif kind == 14:  # DISCONNECT
                        return
            except (ConnectionError, OSError):
                return

    def wait(self, n: int, timeout_s: float = 10.0) -> bool:
        with self.got:
            return self.got.wait_for(lambda: len(self.published) >= n, timeout_s)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def broker():
    b = Broker()
    yield b
    b.close()


def test_publishes_event_json_on_topic_per_rule(broker):
    cfg = MqttConfig(host="127.0.0.1", port=broker.port, topic="home/visor", username="cam", client_id="visor-1")
    with MqttPublisher(cfg, password="pw") as pub:
        assert pub.wait_connected(10)
        pub(event("person-in-yard", 1), b"jpeg")  # the sink signature; the snapshot is not sent
        assert pub.publish(event("car-at-gate", 2)) is True
        assert broker.wait(2)
    assert broker.connects == [{"protocol": "MQTT", "level": 4, "client_id": "visor-1", "username": "cam",
                                "password": "pw"}]
    assert [(t, q) for t, q, _ in broker.published] == [("home/visor/person-in-yard", 1),
                                                        ("home/visor/car-at-gate", 1)]
    assert json.loads(broker.published[0][2]) == event("person-in-yard", 1).to_dict()
    assert (pub.published, pub.dropped, pub.pending) == (2, 0, 0)


def test_events_wait_for_a_late_broker(broker):
    """QoS 1 events published before the connection is up are sent once it is; publish never blocks."""
    # a port where nothing listens yet; the broker is started on it afterwards
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pub = MqttPublisher(MqttConfig(host="127.0.0.1", port=port, topic="t"))
    try:
        start = time.monotonic()
        assert pub.publish(event("r", 0)) is True
        assert time.monotonic() - start < 0.5
        time.sleep(0.3)  # paho's first connection attempt is refused
        assert not pub.connected
        late = socket.socket()
        late.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        late.bind(("127.0.0.1", port))
        broker.sock.close()
        broker.sock = late
        late.listen(4)
        threading.Thread(target=broker._serve, daemon=True).start()
        assert broker.wait(1, timeout_s=15)  # paho retries the connection after 1 s
        assert broker.published[0][0] == "t/r"
    finally:
        pub.close(timeout_s=5)
    assert pub.published == 1


def test_queue_bound_drops(broker):
    with socket.socket() as s:  # nobody listens: everything stays queued
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pub = MqttPublisher(MqttConfig(host="127.0.0.1", port=port, topic="t", queue_size=3))
    results = [pub.publish(event("r", i)) for i in range(5)]
    assert results == [True, True, True, False, False] and pub.dropped == 2
    assert pub.close(timeout_s=0.1) is False and pub.dropped == 5  # the 3 unsent counted on close


def test_missing_paho_names_the_extra(monkeypatch):
    real_import = builtins.__import__

    def no_paho(name, *args, **kwargs):
        if name.startswith("paho"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_paho)
    with pytest.raises(ConfigError) as e:
        MqttPublisher(MqttConfig(host="127.0.0.1"))
    assert INSTALL_HINT in str(e.value) and "pip install 'visor-vision[mqtt]'" in str(e.value)


def test_password_from_env_and_validation(monkeypatch):
    cfg = MqttConfig(host="h", password_env="VISOR_TEST_MQTT_PW")
    monkeypatch.delenv("VISOR_TEST_MQTT_PW", raising=False)
    with pytest.raises(ConfigError, match="VISOR_TEST_MQTT_PW is not set"):
        password_from_env(cfg)
    monkeypatch.setenv("VISOR_TEST_MQTT_PW", "pw")
    assert password_from_env(cfg) == "pw" and password_from_env(MqttConfig(host="h")) is None
    assert MqttConfig(host="h", topic="a/b").topic_for("rule-1") == "a/b/rule-1"
    for kwargs, message in [({"host": ""}, "host"), ({"host": "h", "port": 0}, "port"),
                            ({"host": "h", "topic": "a/+/b"}, "wildcards"), ({"host": "h", "topic": "a/"}, "trailing"),
                            ({"host": "h", "qos": 3}, "qos"), ({"host": "h", "tls": "yes"}, "tls")]:
        with pytest.raises(ConfigError, match=message):
            MqttConfig(**kwargs)
