"""What devices actually send: clock faults, timestamp formats and the payload bytes.

Real fleets mix clocks that drift by minutes, loggers that write local wall time
without a zone, and firmware that sends epoch milliseconds; the pipeline's
alignment stage must cope with all of them, so the simulator produces them on
purpose, deterministically per seed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo

import numpy as np

from schemas.network import Network
from schemas.topics import MQTT_UP

if TYPE_CHECKING:
    from simulator.scenario import ScenarioBlock

TsFormat = Literal["iso_utc", "epoch_ms", "local_naive"]

_STREAM_FAULTS = 0x46415554  # keeps the fault draw independent of every other random stream


@dataclass(frozen=True)
class FaultConfig:
    """How many devices get which clock fault; explicit lists override the seeded draw."""

    n_skewed: int = 3
    skew_minutes: tuple[float, float] = (3.0, 12.0)  # |skew| range; the sign is drawn too
    n_local_time: int = 2
    n_epoch_ms: int = 2
    skewed: tuple[tuple[str, float], ...] | None = None  # ((station_id, minutes), ...)
    local_time: tuple[str, ...] | None = None
    epoch_ms: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if min(self.n_skewed, self.n_local_time, self.n_epoch_ms) < 0:
            raise ValueError("fault counts must be >= 0")
        lo, hi = self.skew_minutes
        if not 0 <= lo <= hi:
            raise ValueError(f"skew_minutes must be (low, high) with 0 <= low <= high, got {self.skew_minutes}")


@dataclass(frozen=True)
class DeviceClock:
    station_id: str
    ts_format: TsFormat = "iso_utc"
    skew_s: int = 0  # device clock minus true time

    @property
    def faulty(self) -> bool:
        return self.skew_s != 0 or self.ts_format != "iso_utc"

    def describe(self, zone: str) -> str:
        if self.ts_format == "local_naive":
            return f"local time without zone ({zone})"
        fmt = "epoch ms" if self.ts_format == "epoch_ms" else "ISO-8601 UTC"
        if self.skew_s:
            return f"clock {self.skew_s / 60:+.1f} min ({fmt})"
        return fmt


def assign_clocks(network: Network, seed: int, faults: FaultConfig) -> dict[str, DeviceClock]:
    """Clock behaviour of every station: explicit lists first, the rest drawn from the seed."""
    ids = sorted(network.stations)
    for listed in (faults.local_time or (), faults.epoch_ms or (), tuple(s for s, _ in faults.skewed or ())):
        unknown = sorted(set(listed) - set(ids))
        if unknown:
            raise ValueError(f"fault config names unknown stations {unknown}")
    clocks = {sid: DeviceClock(sid) for sid in ids}
    taken: set[str] = set()
    rng = np.random.default_rng([seed, _STREAM_FAULTS])
    # The seeded draw skips co-located stations (explicit lists may still name them): adding
    # a co-located pod then leaves every other station's clock as it was for the same seed.
    drawable = [sid for sid in ids if network.stations[sid].colocated_with is None]
    order = [drawable[i] for i in rng.permutation(len(drawable))]
    # Magnitudes and signs are drawn for every slot even when lists are explicit, so
    # overriding one kind of fault does not reshuffle the others.
    minutes = rng.uniform(*faults.skew_minutes, size=max(faults.n_skewed, 1)) * rng.choice([-1.0, 1.0], size=max(faults.n_skewed, 1))

    def pick(explicit: tuple[str, ...] | None, n: int) -> list[str]:
        chosen = list(explicit) if explicit is not None else [s for s in order if s not in taken][:n]
        taken.update(chosen)
        return chosen

    if faults.skewed is not None:
        skewed = [(sid, float(m)) for sid, m in faults.skewed]
        taken.update(sid for sid, _ in skewed)
    else:
        skewed = []
    for sid in pick(faults.local_time, faults.n_local_time):
        clocks[sid] = DeviceClock(sid, "local_naive")
    for sid in pick(faults.epoch_ms, faults.n_epoch_ms):
        clocks[sid] = DeviceClock(sid, "epoch_ms")
    if faults.skewed is None:
        skewed = list(zip(pick(None, faults.n_skewed), minutes.tolist()))
    for sid, m in skewed:
        clocks[sid] = DeviceClock(sid, clocks[sid].ts_format, round(m * 60))
    return clocks


def utc_offsets_ms(zone: str, t_ms: np.ndarray) -> np.ndarray:
    """UTC offset of `zone` at each instant (ms); zone rules are evaluated once per distinct minute."""
    tz = ZoneInfo(zone)
    minutes, inverse = np.unique(np.asarray(t_ms, dtype=np.int64) // 60_000, return_inverse=True)
    offs = np.array(
        [tz.utcoffset(datetime.fromtimestamp(int(m) * 60, UTC)).total_seconds() * 1000 for m in minutes],  # type: ignore[union-attr]
        dtype=np.int64,
    )
    return offs[inverse.reshape(np.shape(t_ms))]


def round_sig3(values: np.ndarray) -> np.ndarray:
    """Three significant digits, but never rounding away integer digits (1234.5 -> 1234.0)."""
    v = np.asarray(values, dtype=np.float64)
    mag = np.floor(np.log10(np.where(v == 0, 1.0, np.abs(v))))
    scale = 10.0 ** np.clip(2 - mag, 0, 4)
    return np.round(v * scale) / scale


def _iso(ms: np.ndarray, unit: str) -> np.ndarray:
    return np.datetime_as_string(ms.astype("datetime64[ms]"), unit=unit)


def encode_block(network: Network, block: ScenarioBlock, clocks: dict[str, DeviceClock]) -> list[tuple[int, str, bytes]]:
    """(step, MQTT topic, payload bytes) for every station and step, sorted by step then station id.

    Devices send their raw values (block.raw: calibration inverse and drift applied), never `measured`.
    """
    n_st, n_t = len(block.station_ids), len(block.times_ms)
    col = {p: i for i, p in enumerate(block.params)}
    values = round_sig3(np.nan_to_num(block.raw))
    gw = np.char.add(_iso(block.times_ms[None, :] + block.gw_delay_ms, "ms"), "Z")  # (S, T)
    topics, cols, ts_cols = [], [], []
    for sid in block.station_ids:
        st = network.stations[sid]
        clock = clocks[sid]
        device_ms = block.times_ms + clock.skew_s * 1000
        if clock.ts_format == "epoch_ms":
            ts: list[str | int] = device_ms.tolist()
        elif clock.ts_format == "local_naive":
            local = _iso(device_ms + utc_offsets_ms(st.timezone, device_ms), "s")
            ts = np.char.replace(local, "T", " ").tolist()
        else:
            ts = np.char.add(_iso(device_ms, "s"), "Z").tolist()
        ts_cols.append(ts)
        topics.append(MQTT_UP.format(region=st.region, station_id=sid))
        cols.append([col[p] for p in st.parameters])
    out: list[tuple[int, str, bytes]] = []
    for j in range(n_t):  # one JSON document per station-step: the loop is per message, not per reading
        step = block.step0 + j
        for i in range(n_st):
            st = network.stations[block.station_ids[i]]
            payload = {
                "station_id": st.id,
                "seq": step,
                "ts": ts_cols[i][j],
                "gw_ts": str(gw[i, j]),
                "values": dict(zip(st.parameters, values[i, j, cols[i]].tolist())),
            }
            out.append((step, topics[i], json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()))
    return out
