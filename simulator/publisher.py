"""Publish the simulated stations over MQTT, one authenticated client per station.

Each station connects as username = its station id with its own password, so the
broker's ACL (a device may publish only to its own topic) is exercised exactly
as with real gateways. QoS 1; PUBACKs are counted; pacing is either a message
rate (token bucket) or a simulation speed (sim seconds per wall second).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from tqdm import tqdm

from connectors.mqtt_io import mqtt_client
from jointwatch.stack.secrets import Secrets
from schemas.network import Network
from simulator.scenario import ScenarioConfig, iter_device_steps

DEFAULT_RATE = 200.0  # messages per second
MAX_INFLIGHT = 100  # per client, as unacknowledged QoS 1 messages
MAX_PENDING = 2000  # across clients: bounds paho's local queues when the broker is slow
DRAIN_TIMEOUT_S = 30.0


class BrokerError(RuntimeError):
    """The broker cannot be used: unreachable, or it refused a device's credentials."""


@dataclass(frozen=True)
class PublishStats:
    published: int  # handed to the client library
    acked: int  # PUBACK received
    steps: int  # simulation steps completed
    elapsed_s: float


class _TokenBucket:
    """Smooth pacing to `rate` per second, with bursts of at most `burst` tokens."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.last = burst, time.monotonic()

    def take(self, stop: threading.Event, deadline: float | None) -> bool:
        """Wait for one token; False if stopped or past the deadline first."""
        while True:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
            self.last = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return True
            wait = (1.0 - self.tokens) / self.rate
            if deadline is not None and now + wait > deadline:
                return False
            if stop.wait(wait):
                return False


class _Fleet:
    """One connected MQTT client per station, sharing an ack counter."""

    def __init__(self, network: Network, secrets: Secrets, host: str, port: int, secrets_hint: str, timeout_s: float) -> None:
        self.clients: dict[str, mqtt.Client] = {}
        self.acked = 0
        self._lock = threading.Lock()
        self._connacks: dict[str, tuple[threading.Event, list[mqtt.ReasonCode]]] = {}
        where = f"{host}:{port}"
        try:
            for sid in sorted(network.stations):
                try:
                    password = secrets.mqtt_password(sid)
                except KeyError:
                    raise BrokerError(f"no MQTT password for station {sid!r} in {secrets_hint}: run `jointwatch stack up` to provision device credentials") from None
                client = mqtt_client(f"jw-sim-{sid}", sid, password)
                client.max_inflight_messages_set(MAX_INFLIGHT)
                done: tuple[threading.Event, list[mqtt.ReasonCode]] = (threading.Event(), [])
                self._connacks[sid] = done
                client.on_connect = self._on_connect(done)
                client.on_publish = self._on_publish
                client.connect_timeout = timeout_s
                try:
                    client.connect(host, port, keepalive=30)
                except OSError as exc:
                    raise BrokerError(f"MQTT broker at {where} is unreachable ({exc.strerror or exc}): start the local stack with `jointwatch stack up` (or check --port-base)") from None
                self.clients[sid] = client
                client.loop_start()
            deadline = time.monotonic() + timeout_s
            for sid, (event, codes) in self._connacks.items():
                if not event.wait(max(0.0, deadline - time.monotonic())):
                    raise BrokerError(f"MQTT broker at {where} did not answer station {sid}'s CONNECT within {timeout_s:.0f} s: is it healthy? (`jointwatch stack status`)")
                if codes[0].is_failure:
                    raise BrokerError(f"MQTT broker at {where} refused station {sid}: {codes[0]}; its credentials in {secrets_hint} do not match the broker's: run `jointwatch stack up` to (re)provision them")
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _on_connect(done: tuple[threading.Event, list[mqtt.ReasonCode]]):  # type: ignore[no-untyped-def]
        def callback(client: mqtt.Client, userdata: object, flags: object, reason_code: mqtt.ReasonCode, properties: object) -> None:
            if not done[0].is_set():  # only the first CONNACK decides; later ones are reconnects
                done[1].append(reason_code)
                done[0].set()

        return callback

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int, reason_code: mqtt.ReasonCode, properties: object) -> None:
        with self._lock:
            self.acked += 1

    def close(self) -> None:
        for client in self.clients.values():
            client.disconnect()
            client.loop_stop()
        self.clients.clear()


def publish(
    network: Network,
    config: ScenarioConfig,
    *,
    secrets: Secrets,
    host: str = "127.0.0.1",
    port: int = 1883,
    step0: int = 0,
    steps: int | None = None,
    duration_s: float | None = None,
    rate: float | None = None,
    speed: float | None = None,
    stop: threading.Event | None = None,
    progress: bool = False,
    secrets_hint: str = "the secrets file",
    connect_timeout_s: float = 10.0,
) -> PublishStats:
    """Publish steps [step0, step0 + steps) of the scenario; stop early on `duration_s` (wall) or `stop`.

    Pacing: `rate` messages/s (default DEFAULT_RATE) or `speed` sim seconds per
    wall second (each step's snapshots are sent when its sim time is due).
    Waits for the PUBACKs of what it sent (up to DRAIN_TIMEOUT_S) before returning.
    """
    if rate is not None and speed is not None:
        raise ValueError("give either rate or speed, not both")
    if (rate is not None and rate <= 0) or (speed is not None and speed <= 0):
        raise ValueError("rate and speed must be > 0")
    if rate is None and speed is None:
        rate = DEFAULT_RATE
    stop = stop or threading.Event()
    fleet = _Fleet(network, secrets, host, port, secrets_hint, connect_timeout_s)
    start = time.monotonic()
    deadline = None if duration_s is None else start + duration_s
    bucket = _TokenBucket(rate, burst=max(1.0, rate / 10)) if rate is not None else None
    total = steps * len(network.stations) if steps is not None else None
    bar = tqdm(total=total, unit="msg", disable=not progress, dynamic_ncols=True)
    pending: deque[mqtt.MQTTMessageInfo] = deque()
    published = done_steps = 0
    try:
        for step, messages in iter_device_steps(network, config, step0, steps):
            if speed is not None:
                due = start + (step - step0) * config.step_s / speed
                if (deadline is not None and due > deadline) or stop.wait(max(0.0, due - time.monotonic())):
                    break
            complete = True
            for topic, payload in messages:
                out_of_time = deadline is not None and time.monotonic() > deadline
                if stop.is_set() or out_of_time or (bucket is not None and not bucket.take(stop, deadline)):
                    complete = False
                    break
                sid = topic.split("/")[3]  # jw/v1/{region}/{station_id}/up
                pending.append(fleet.clients[sid].publish(topic, payload, qos=1))
                published += 1
                bar.update(1)
                _trim(pending)
            if not complete:
                break
            done_steps += 1
            bar.set_postfix(acked=fleet.acked, refresh=False)
        _drain(pending)
    finally:
        bar.set_postfix(acked=fleet.acked)
        bar.close()
        acked = fleet.acked
        fleet.close()
    return PublishStats(published, acked, done_steps, time.monotonic() - start)


def _trim(pending: deque[mqtt.MQTTMessageInfo]) -> None:
    """Forget acknowledged messages; block on the oldest while too many are outstanding."""
    while pending and _settled(pending[0]):
        pending.popleft()
    while len(pending) > MAX_PENDING:
        _wait(pending.popleft(), DRAIN_TIMEOUT_S)


def _drain(pending: deque[mqtt.MQTTMessageInfo]) -> None:
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while pending:
        _wait(pending.popleft(), max(0.0, deadline - time.monotonic()))


def _settled(info: mqtt.MQTTMessageInfo) -> bool:
    try:
        return info.is_published()
    except (ValueError, RuntimeError):  # never queued or failed: nothing left to wait for
        return True


def _wait(info: mqtt.MQTTMessageInfo, timeout: float) -> None:
    try:
        info.wait_for_publish(timeout)
    except (ValueError, RuntimeError):  # never queued or failed: it simply stays unacknowledged
        pass
