"""Per-device clock-skew detection and correction, pure (no I/O), for the bridge's hot path.

Each accepted message gives one sample: offset = device time - reference time, where the
reference is the gateway's receive time (`gw_ts`: NTP-synced, and part of the payload, so a
replay sees the same samples) or else the bridge's own receive time. Transport delay only
ever makes a sample *smaller* than the device's true offset, by the delay.

Per device:
- A *regime* is a run of samples that agree: its estimate is the median of the last
  `window` samples inside it (robust to delay jitter; a sliding window follows a drifting
  clock, lagging by about window/2 samples times the drift per sample).
- Before a device's first regime is established, `min_samples` consecutive samples must
  agree (all within the tolerance of their median) and span real reference time (a replayed
  backlog arrives in a burst: device time runs, reference time stands still). Until then,
  nothing is corrected.
- A sample farther than the tolerance from the estimate is an outlier and leaves the
  estimate alone (a delayed, re-sent or replayed reading). When `jump_samples` consecutive
  outliers agree with each other in the same way, the clock has jumped (reboot, NTP fix):
  the estimate restarts from those samples alone, so the old offset is never applied to the
  new regime once it is seen.
- Event times are corrected while |estimate| > tolerance; the correction stops (clock_ok)
  once |estimate| <= tolerance / 2 (hysteresis: a clock hovering at the tolerance does not
  flap). The offset applied is the estimate in whole seconds and changes only when the
  estimate moves by more than a second, so re-sent copies of a reading get the same
  corrected time and a device's regular sampling grid stays regular.
- Causality bound: a reading cannot be measured after the gateway received it. An outlier
  (or a sample before the first regime) whose time, with the current correction, would be
  more than the tolerance after its reference time is placed at the reference time, with
  its own offset: a clock that jumped forward (or a +8 h device still being learnt) never
  pushes readings into the future, not even for the samples before a jump is confirmed.

Deterministic: the same (device time, reference time) sequence per device gives the same
corrections and events; devices never influence each other. All arithmetic is integer ms.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

from schemas.errors import ConfigError
from schemas.models import DeviceHealth

Reference = Literal["gateway", "bridge"]
STEP_MS = 1000  # the applied offset is whole seconds and moves only when the estimate moved more than this


@dataclass(frozen=True)
class ClockConfig:
    tolerance_ms: int = 15_000  # half the job's 30 s out-of-orderness: room left for transport delay
    window: int = 15  # samples in the sliding median
    min_samples: int = 5  # agreeing samples before a device's first estimate is trusted
    jump_samples: int = 3  # consecutive outliers agreeing on a new offset that confirm a jump

    def __post_init__(self) -> None:
        # Keys are the config file's names, so parse_clock_config can pass the error on as is.
        for name in ("tolerance_ms", "window", "min_samples", "jump_samples"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool):
                raise ConfigError("<ClockConfig>", name, f"must be an integer, got {v!r}")
        if not 1000 <= self.tolerance_ms <= 86_400_000:
            raise ConfigError("<ClockConfig>", "tolerance_s", f"must be within 1..86400 s, got {self.tolerance_ms / 1000:g}")
        if not 3 <= self.window <= 1000:
            raise ConfigError("<ClockConfig>", "window", f"must be within 3..1000 samples, got {self.window}")
        # One sample cannot tell a skewed clock from a delayed message: at least two must agree.
        for name in ("min_samples", "jump_samples"):
            if not 2 <= getattr(self, name) <= self.window:
                raise ConfigError("<ClockConfig>", name, f"must be within 2..window ({self.window}), got {getattr(self, name)}")


_CONFIG_KEYS = ("version", "tolerance_s", "window", "min_samples", "jump_samples")


def parse_clock_config(doc: Any, source: str = "<clock config>") -> ClockConfig:
    """A validated ClockConfig from a parsed YAML document (ConfigError naming the key otherwise);
    keys left out keep their defaults."""
    if doc is None:
        return ClockConfig()
    if not isinstance(doc, dict):
        raise ConfigError(source, "<root>", "must be a mapping")
    for key in doc:
        if key not in _CONFIG_KEYS:
            raise ConfigError(source, str(key), f"unknown setting (known: {', '.join(_CONFIG_KEYS)})")
    if doc.get("version", 1) != 1 or isinstance(doc.get("version"), bool):
        raise ConfigError(source, "version", f"must be 1, got {doc['version']!r}")
    values: dict[str, Any] = {k: doc[k] for k in ("window", "min_samples", "jump_samples") if k in doc}
    if "tolerance_s" in doc:
        tol = doc["tolerance_s"]
        if not isinstance(tol, (int, float)) or isinstance(tol, bool) or tol != tol or tol in (float("inf"), float("-inf")):
            raise ConfigError(source, "tolerance_s", f"must be a number of seconds, got {tol!r}")
        values["tolerance_ms"] = round(tol * 1000)
    try:
        return ClockConfig(**values)
    except ConfigError as exc:
        raise ConfigError(source, exc.key, exc.reason) from None


class _Device:
    """One device's clock state. Samples are (offset, reference, device) in integer ms."""

    __slots__ = ("recent", "ordered", "run", "established", "correcting", "applied", "reported", "seen")

    def __init__(self, window: int, run_len: int) -> None:
        self.recent: deque[int] = deque(maxlen=window)  # the regime's offsets, in arrival order
        self.ordered: list[int] = []  # the same offsets, sorted: the median is the middle one
        self.run: deque[tuple[int, int, int]] = deque(maxlen=run_len)  # consecutive samples the regime does not explain
        self.established = False
        self.correcting = False
        self.applied = 0  # subtracted from device time while correcting
        self.reported = 0  # estimate in the last clock_skew / clock_jump event
        self.seen: deque[tuple[int, int]] = deque(maxlen=window)  # (device, reference) of recent samples: re-sent copies

    def median(self) -> int:
        o = self.ordered
        return o[(len(o) - 1) // 2]

    def add(self, offset: int) -> None:
        if len(self.recent) == self.recent.maxlen:
            old = self.recent[0]
            del self.ordered[bisect.bisect_left(self.ordered, old)]
        self.recent.append(offset)
        bisect.insort(self.ordered, offset)

    def to_state(self) -> dict[str, Any]:
        return {
            "recent": list(self.recent), "run": [list(r) for r in self.run], "established": self.established,
            "correcting": self.correcting, "applied": self.applied, "reported": self.reported, "seen": [list(x) for x in self.seen],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], window: int, run_len: int) -> "_Device":
        dev = cls(window, run_len)
        dev.recent.extend(int(o) for o in state["recent"])  # a smaller window now keeps the newest
        dev.ordered = sorted(dev.recent)
        dev.run.extend((int(a), int(b), int(c)) for a, b, c in state["run"])
        dev.established = bool(state["established"]) and bool(dev.recent)
        dev.correcting, dev.applied, dev.reported = bool(state["correcting"]), int(state["applied"]), int(state["reported"])
        dev.seen.extend((int(a), int(b)) for a, b in state["seen"])
        return dev

    def restart(self, offsets: list[int]) -> None:
        self.recent.clear()
        self.recent.extend(offsets)
        self.ordered = sorted(self.recent)
        self.run.clear()
        self.established = True


def _agree(samples: list[tuple[int, int, int]], tolerance: int) -> bool:
    """Samples that can only be one clock regime: offsets within the tolerance of their median,
    and reference time advancing at least half as fast as device time (not a replayed burst)."""
    offsets = sorted(s[0] for s in samples)
    mid = offsets[(len(offsets) - 1) // 2]
    if offsets[-1] - mid > tolerance or mid - offsets[0] > tolerance:
        return False
    first, last = samples[0], samples[-1]
    return 2 * (last[1] - first[1]) >= abs(last[2] - first[2])


class ClockSkew:
    """Per-device offset estimates; `observe` once per accepted message, in arrival order."""

    def __init__(self, config: ClockConfig | None = None) -> None:
        self.config = config or ClockConfig()
        self._devices: dict[str, _Device] = {}
        self._run_len = max(self.config.min_samples, self.config.jump_samples)
        self._changed: set[str] = set()

    # -- persistence: a restarted bridge goes on from where the last one stopped ---------------
    def state(self, station_id: str) -> dict[str, Any] | None:
        """A device's estimator state, JSON-able (jw.clock_state.v1 `state`); None if never seen."""
        dev = self._devices.get(station_id)
        return dev.to_state() if dev is not None else None

    def restore(self, station_id: str, state: dict[str, Any]) -> None:
        """Resume a device from `state` (under this estimator's config); its next samples continue as if never stopped."""
        self._devices[station_id] = _Device.from_state(state, self.config.window, self._run_len)

    def drain_changed(self) -> set[str]:
        """Devices observed since the last call: the states worth saving."""
        changed, self._changed = self._changed, set()
        return changed

    def estimate(self, station_id: str) -> int | None:
        """The current offset estimate of a device (ms, device minus reference), None before its first regime."""
        dev = self._devices.get(station_id)
        return dev.median() if dev is not None and dev.established else None

    def applied(self, station_id: str) -> int:
        """The offset currently subtracted from the device's regular readings (0 when not corrected)."""
        dev = self._devices.get(station_id)
        return dev.applied if dev is not None and dev.correcting else 0

    def observe(
        self, station_id: str, region: str, device_ms: int, reference_ms: int, reference: Reference = "gateway"
    ) -> tuple[int, int, DeviceHealth | None]:
        """One message's sample -> (event time, offset subtracted from device time, health event or None)."""
        cfg = self.config
        tol = cfg.tolerance_ms
        dev = self._devices.get(station_id)
        if dev is None:
            dev = self._devices[station_id] = _Device(cfg.window, self._run_len)
        self._changed.add(station_id)
        if (device_ms, reference_ms) in dev.seen:
            # A re-sent copy (store-and-forward after a reconnect, an MQTT redelivery) is no new
            # evidence about the clock: corrected as things stand, never added to the estimate.
            return (*_placed(device_ms, reference_ms, dev.applied if dev.correcting else 0, tol), None)
        dev.seen.append((device_ms, reference_ms))
        offset = device_ms - reference_ms
        kind: str | None = None
        previous = dev.applied if dev.correcting else 0
        if dev.established and -tol <= offset - dev.median() <= tol:
            inlier = True
            dev.add(offset)
            dev.run.clear()
            est = dev.median()
            if dev.correcting:
                if 2 * abs(est) <= tol:
                    dev.correcting, dev.applied, kind = False, 0, "clock_ok"
                elif abs(est - dev.applied) > STEP_MS:
                    dev.applied = _whole_seconds(est)
                    if abs(est - dev.reported) > tol:  # moved by more than we tolerate since the last event
                        kind = "clock_skew"
            elif abs(est) > tol:
                dev.correcting, dev.applied, kind = True, _whole_seconds(est), "clock_skew"
        else:
            inlier = False
            dev.run.append((offset, reference_ms, device_ms))
            need = cfg.jump_samples if dev.established else cfg.min_samples
            if len(dev.run) >= need:
                recent = list(dev.run)[-need:]
                if _agree(recent, tol):
                    jumped = dev.established
                    dev.restart([s[0] for s in recent])
                    inlier = True  # this sample belongs to the new regime
                    est = dev.median()
                    dev.correcting = abs(est) > tol
                    dev.applied = _whole_seconds(est) if dev.correcting else 0
                    if jumped:
                        kind = "clock_jump"
                    elif dev.correcting:
                        kind = "clock_skew"
        applied = dev.applied if dev.correcting else 0
        event_time, applied = (device_ms - applied, applied) if inlier else _placed(device_ms, reference_ms, applied, tol)
        if kind is None:
            return event_time, applied, None
        est = dev.median()
        if kind != "clock_ok":
            dev.reported = est
        return event_time, applied, self._event(kind, station_id, region, dev, est, previous, device_ms, reference_ms, reference)

    def _event(
        self, kind: str, station_id: str, region: str, dev: _Device, est: int, previous: int, device_ms: int, reference_ms: int, reference: Reference
    ) -> DeviceHealth:
        tol = self.config.tolerance_ms
        applied = dev.applied if dev.correcting else 0
        n = len(dev.recent)
        if kind == "clock_ok":
            reason = f"clock {_fmt(est)} off the {reference} clock, back within half the {_fmt(tol, sign=False)} tolerance: correction stopped"
        elif kind == "clock_jump":
            now = f"event times corrected by {_fmt(applied)}" if dev.correcting else "within tolerance, not corrected"
            was = f"corrected by {_fmt(previous)}" if previous else "not corrected"
            reason = f"clock jumped: {n} consecutive samples agree on {_fmt(est)} off the {reference} clock (was {was}); {now}"
        elif previous == 0:
            reason = f"clock {_fmt(est)} off the {reference} clock (median of {n} samples), beyond the {_fmt(tol, sign=False)} tolerance: event times corrected by {_fmt(applied)}"
        else:
            reason = f"clock offset drifted to {_fmt(est)} (median of {n} samples): correction {_fmt(previous)} -> {_fmt(applied)}"
        return {
            "schema": "jw.device_health.v1",
            "event_id": f"{station_id}/{kind}/{reference_ms}",
            "station_id": station_id,
            "region": region,
            "kind": kind,  # type: ignore[typeddict-item]
            "corrected": dev.correcting,
            "offset_ms": est,
            "applied_offset_ms": applied,
            "previous_applied_offset_ms": previous,
            "samples": n,
            "reference_time": reference_ms,
            "reference": reference,
            "device_time": device_ms,
            "tolerance_ms": tol,
            "reason": reason,
        }


def _placed(device_ms: int, reference_ms: int, applied: int, tol: int) -> tuple[int, int]:
    """(event time, offset subtracted). Measured after the gateway received it? Only a clock ahead
    of what we apply does that: such a reading is placed at the reference time."""
    if device_ms - applied > reference_ms + tol:
        return reference_ms, device_ms - reference_ms
    return device_ms - applied, applied


def _whole_seconds(ms: int) -> int:
    return (ms + 500) // 1000 * 1000  # half up, also for negatives (integer floor division): deterministic


def _fmt(ms: int, sign: bool = True) -> str:
    """+8h00m01s, -9m54s, +16.3s: offsets as people read them."""
    s = "-" if ms < 0 else "+" if sign else ""
    a = abs(ms)
    if a >= 3_600_000:
        return f"{s}{a // 3_600_000}h{a // 60_000 % 60:02d}m{a // 1000 % 60:02d}s"
    if a >= 60_000:
        return f"{s}{a // 60_000}m{a // 1000 % 60:02d}s"
    return f"{s}{a / 1000:.1f}s"
