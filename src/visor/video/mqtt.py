"""MQTT publishing of watch events (Home Assistant, Node-RED) with paho-mqtt (the ``mqtt`` extra).

Each event is published as its JSON (:meth:`Event.to_dict`) on ``<topic>/<rule>``. paho's network thread
connects, reconnects and sends; :meth:`MqttPublisher.publish` only queues (bounded), so a slow or absent
broker never blocks the video loop. With QoS 1 or 2 (default 1) events queued while the broker is away are
sent when it is back; QoS 0 events published without a connection are lost and counted as dropped.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from visor.errors import ConfigError
from visor.video.sinks import EventLike as Event

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'visor-vision[mqtt]'"
_TOPIC_CHARS = re.compile(r"^[^+#\x00]+$")


@dataclass(frozen=True)
class MqttConfig:
    """The broker and topic. ``password_env`` names the environment variable holding the password (never
    the password itself); ``tls`` uses the system's CA certificates. ``queue_size`` bounds the events that
    wait for the broker."""

    host: str
    port: int = 1883
    topic: str = "visor/events"
    username: str | None = None
    password_env: str | None = None
    tls: bool = False
    qos: int = 1
    retain: bool = False
    client_id: str = ""
    keepalive_s: int = 60
    queue_size: int = 1000

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host or any(c.isspace() for c in self.host):
            raise ConfigError(f"mqtt host must be a host name or address, got {self.host!r}")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 1 <= self.port <= 65535:
            raise ConfigError(f"mqtt port must be an integer in 1..65535, got {self.port!r}")
        if (not isinstance(self.topic, str) or not self.topic or not _TOPIC_CHARS.match(self.topic)
                or self.topic.endswith("/")):
            raise ConfigError(f"mqtt topic must be a topic name without wildcards (+, #) or a trailing '/', "
                              f"got {self.topic!r}")
        if self.username is not None and not isinstance(self.username, str):
            raise ConfigError("mqtt username must be a string")
        if self.password_env is not None and (not isinstance(self.password_env, str) or not self.password_env
                                              or "=" in self.password_env):
            raise ConfigError("mqtt password_env must be the name of an environment variable")
        if self.qos not in (0, 1, 2) or isinstance(self.qos, bool):
            raise ConfigError(f"mqtt qos must be 0, 1 or 2, got {self.qos!r}")
        for name in ("tls", "retain"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"mqtt {name} must be true or false, got {getattr(self, name)!r}")
        if not isinstance(self.client_id, str):
            raise ConfigError("mqtt client_id must be a string")
        for name in ("keepalive_s", "queue_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"mqtt {name} must be an integer >= 1, got {value!r}")

    def topic_for(self, rule: str) -> str:
        """The topic of ``rule``'s events: ``<topic>/<rule>``."""
        return f"{self.topic}/{rule}"


def password_from_env(config: MqttConfig) -> str | None:
    """The password named by ``config.password_env``, None when it names none; a variable that is unset
    raises :class:`ConfigError` naming the variable (never a value)."""
    if config.password_env is None:
        return None
    value = os.environ.get(config.password_env)
    if value is None:
        raise ConfigError(f"the MQTT password's environment variable {config.password_env} is not set")
    return value


def _paho() -> Any:
    try:
        import paho.mqtt.client as mqtt
    except ImportError:
        raise ConfigError(f"MQTT events need paho-mqtt: {INSTALL_HINT}") from None
    if not hasattr(mqtt, "CallbackAPIVersion"):
        raise ConfigError(f"MQTT events need paho-mqtt 2.0 or newer: {INSTALL_HINT}")
    return mqtt


class MqttPublisher:
    """Publishes events to an MQTT broker (3.1.1) through paho's background thread; calling the publisher
    makes it a watch sink. Counters: ``published`` (acknowledged by the broker at QoS 1/2, handed to the
    socket at QoS 0), ``dropped`` (queue full, or QoS 0 without a connection). ``connected`` says whether the
    broker is connected now. Use as a context manager or call :meth:`close`."""

    def __init__(self, config: MqttConfig, password: str | None = None) -> None:
        mqtt = _paho()
        self.config = config
        self.published = 0
        self.dropped = 0
        self._lock = threading.RLock()  # paho may call on_publish from within publish
        self._connected = threading.Event()
        self._pending: dict[int, Any] = {}
        self._closed = False
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=config.client_id,
                             protocol=mqtt.MQTTv311)
        if config.username is not None or password is not None:
            client.username_pw_set(config.username or "", password)
        if config.tls:
            client.tls_set()
        client.max_queued_messages_set(config.queue_size)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        self._client = client
        try:
            client.connect_async(config.host, config.port, keepalive=config.keepalive_s)
        except (OSError, ValueError) as e:
            raise ConfigError(f"mqtt: cannot connect to {config.host}:{config.port}: {e}") from None
        client.loop_start()

    @classmethod
    def from_config(cls, config: MqttConfig) -> MqttPublisher:
        """A publisher whose password comes from the environment variable ``config.password_env``."""
        return cls(config, password_from_env(config))

    def __repr__(self) -> str:
        return (f"MqttPublisher({self.config.host}:{self.config.port}, topic={self.config.topic!r}, "
                f"published={self.published}, dropped={self.dropped})")

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the broker's connection; whether it is connected."""
        return self._connected.wait(timeout_s)

    # ------------------------------------------------------------------ paho callbacks (its thread)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if getattr(reason_code, "is_failure", False):
            log.warning("mqtt %s:%d refused the connection: %s", self.config.host, self.config.port, reason_code)
            return
        log.info("mqtt connected to %s:%d", self.config.host, self.config.port)
        self._connected.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        self._connected.clear()
        if not self._closed:
            log.warning("mqtt %s:%d disconnected (%s); reconnecting", self.config.host, self.config.port,
                        reason_code)

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        with self._lock:
            self._pending.pop(mid, None)
            self.published += 1

    # ------------------------------------------------------------------ publishing

    def payload(self, event: Event) -> bytes:
        """The JSON published for ``event``."""
        return json.dumps(event.to_dict(), separators=(",", ":")).encode("utf-8")

    def publish(self, event: Event) -> bool:
        """Queue ``event`` on ``<topic>/<rule>``; returns at once, False when it was dropped."""
        if self._closed:
            with self._lock:
                self.dropped += 1
            return False
        topic = self.config.topic_for(event.rule)
        with self._lock:  # hold it so that on_publish cannot run before the message is recorded as pending
            try:
                info = self._client.publish(topic, self.payload(event), qos=self.config.qos,
                                            retain=self.config.retain)
            except ValueError as e:  # an invalid topic (a rule name with a wildcard) or payload
                self.dropped += 1
                log.warning("mqtt: event %s not published: %s", event.id, e)
                return False
            ok = info.rc == 0
            if ok and self.config.qos > 0:
                self._pending[info.mid] = info
            elif not ok and not (self.config.qos > 0 and _is_no_conn(info.rc)):
                self.dropped += 1
                log.warning("mqtt: event %s dropped (%s)", event.id, info.rc)
                return False
            elif not ok:  # QoS 1/2 without a connection: paho keeps it and sends it on reconnect
                self._pending[info.mid] = info
        return True

    def __call__(self, event: Event, snapshot: bytes | None = None) -> None:
        self.publish(event)

    @property
    def pending(self) -> int:
        """Events queued and not yet acknowledged."""
        with self._lock:
            return len(self._pending)

    def close(self, timeout_s: float = 5.0) -> bool:
        """Wait up to ``timeout_s`` for queued events to be acknowledged, then disconnect; True when none were
        left."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        while self.pending and time.monotonic() < deadline:
            time.sleep(0.01)
        left = self.pending
        self._closed = True
        self._client.disconnect()
        self._client.loop_stop()
        if left:
            with self._lock:
                self.dropped += left
                self._pending.clear()
        return not left

    def __enter__(self) -> MqttPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _is_no_conn(rc: Any) -> bool:
    import paho.mqtt.client as mqtt

    return bool(rc == mqtt.MQTT_ERR_NO_CONN)


__all__ = ["INSTALL_HINT", "MqttConfig", "MqttPublisher", "password_from_env"]
