"""Calibration join benchmark (issue 4: "event-time temporal join or broadcast state — choose by measurement").

PyFlink 2.3 Table API, embedded MiniCluster, no Kafka: the same N rows (sensor_key from a
set of --sensors stations, value, rh, event time with watermark; `datagen`, sequence-bounded)
go through three variants into a 'blackhole' sink, parallelism 1:
  (a) projection: value passes through (the pipeline's own ceiling);
  (b) Flink SQL event-time temporal join (FOR SYSTEM_TIME AS OF r.ts) against a versioned view
      (ROW_NUMBER deduplication over an append-only, bounded filesystem/CSV source of per-sensor
      linear models with effective_from as rowtime; the source ends, so its watermark passes the end;
      its rows are in effective_from order: a version behind that side's watermark is lost to the join);
      gain * value + offset in SQL;
  (c) a pandas scalar UDF calling calibration.registry.Registry.calibrate (sensor_codes + as-of
      searchsorted + model) with the same models, returning DOUBLE: the job's design.
Each variant runs alternately --rounds times, each time a tiny run (--startup-rows) first, its wall
time taken as the start-up baseline; rows/s excl. start-up = (N - n_tiny) / (t_N - t_tiny).
Before timing, a small sample of (a), (b) and (c) is collected (to_pandas) and checked against numpy.
Python settings are the job's (jobs/pipeline.py): process mode, python.fn-execution.bundle.time 200,
object reuse; no checkpointing. --arrow-batch sets python.fn-execution.arrow.batch.size (the job keeps
Flink's default). Also printed: the UDF body alone (numpy, no Flink) per 1,000-row batch.
Results and conclusions: docs/calibration_join.md.

Run: uv run python -m bench.calibration_join_bench [--rows 1000000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO_ROOT = Path(__file__).resolve().parent.parent
T0_MS = 1_793_491_200_000  # 2026-11-01T00:00:00Z
STEP_MS = 300  # one row every 0.3 s of event time: 200 sensors at one row per minute each
PARAMETER = "no2"
VERSIONS = 3
VARIANTS = ("a", "b", "c")
LABELS = {"a": "(a) projection only", "b": "(b) SQL temporal join", "c": "(c) pandas UDF Registry"}


# --- models: one table, used by the SQL side (CSV), the UDF (registry doc) and the numpy check ------------


def make_models(sensors: int, rows: int, seed: int = 7, shared: bool = False) -> pd.DataFrame:
    """VERSIONS linear models per sensor: v1 long before the data, v2/v3 at 1/3 and 2/3 of the
    run's event-time span (staggered per sensor), so every run, large or small, uses all three.
    Each sensor has its own coefficients (a co-location fit per sensor), unless `shared`: then
    every sensor's version k has the same coefficients (VERSIONS distinct models in all)."""
    rng = np.random.default_rng(seed)
    common = [(round(float(rng.uniform(0.7, 1.3)), 4), round(float(rng.uniform(-5, 5)), 3)) for _ in range(VERSIONS)]
    span = rows * STEP_MS
    out = []
    for s in range(sensors):
        for v in range(VERSIONS):
            eff = T0_MS - 30 * 86_400_000 if v == 0 else T0_MS + v * span // VERSIONS + s * STEP_MS
            gain, off = common[v] if shared else (round(float(rng.uniform(0.7, 1.3)), 4), round(float(rng.uniform(-5, 5)), 3))
            out.append((station(s), v + 1, eff, gain, off))
    df = pd.DataFrame(out, columns=["sensor_key", "version", "eff_ms", "gain", "model_offset"])
    return df.sort_values(["eff_ms", "sensor_key"], kind="stable").reset_index(drop=True)  # a changelog in time order


def station(i: int) -> str:
    return f"s{i:03d}"


def registry_doc(models: pd.DataFrame) -> dict:
    from datetime import datetime, timezone

    sensors = []
    for key, g in models.groupby("sensor_key", sort=True):
        sensors.append({"station_id": key, "parameter": PARAMETER, "models": [
            {"model_id": f"lin-{key}", "version": int(r.version),
             "effective_from": datetime.fromtimestamp(r.eff_ms / 1000, tz=timezone.utc).isoformat(),
             "type": "linear", "coefficients": {"gain": float(r.gain), "offset": float(r.model_offset)}}
            for r in g.sort_values("version").itertuples()]})
    return {"version": 1, "registry_id": "join-bench", "unlisted_sensors": "flag", "sensors": sensors}


def expected(models: pd.DataFrame, keys: np.ndarray, t_ms: np.ndarray, value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """numpy reference, independent of Registry: per sensor, the last version with eff <= t
    -> (calibrated value, version applied (0: none))."""
    out = np.full(len(value), np.nan)
    version = np.zeros(len(value), dtype=np.int64)
    for key, g in models.groupby("sensor_key"):
        g = g.sort_values("eff_ms")
        idx = np.flatnonzero(keys == key)
        pos = np.searchsorted(g.eff_ms.to_numpy(), t_ms[idx], side="right") - 1
        ok = pos >= 0
        gain, off = g.gain.to_numpy(), g.model_offset.to_numpy()
        out[idx[ok]] = gain[pos[ok]] * value[idx[ok]] + off[pos[ok]]
        version[idx[ok]] = g.version.to_numpy()[pos[ok]]
    return out, version


# --- the pandas UDF (c) --------------------------------------------------------------------------


def calibrate_udf(doc: dict):
    from pyflink.table import DataTypes
    from pyflink.table.udf import ScalarFunction, udf

    class RegistryCalibrate(ScalarFunction):
        def __init__(self, doc: dict) -> None:
            self.doc = doc
            self.registry = None

        def open(self, function_context) -> None:
            from calibration.registry import parse_registry

            self.registry = parse_registry(self.doc, "<join-bench>")

        def eval(self, sensor_key: pd.Series, ts_ms: pd.Series, value: pd.Series, rh: pd.Series) -> pd.Series:
            reg = self.registry
            keys = sensor_key.to_numpy(dtype=object)
            codes = reg.sensor_codes(keys, np.full(keys.shape, PARAMETER, dtype=object))
            cal = reg.calibrate(codes, ts_ms.to_numpy(dtype=np.int64), value.to_numpy(dtype=np.float64),
                                {"rh": rh.to_numpy(dtype=np.float64)})
            return pd.Series(cal.value)

    return udf(RegistryCalibrate(doc), result_type=DataTypes.DOUBLE(), func_type="pandas")


# --- Flink ---------------------------------------------------------------------------------------


def make_env(args: argparse.Namespace):
    from pyflink.table import EnvironmentSettings, TableEnvironment

    t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    conf = t_env.get_config()
    conf.set("parallelism.default", "1")
    conf.set("python.executable", sys.executable)
    conf.set("python.fn-execution.bundle.time", "200")  # as jobs/pipeline.py
    if args.arrow_batch:
        conf.set("python.fn-execution.arrow.batch.size", str(args.arrow_batch))
        conf.set("python.fn-execution.bundle.size", str(max(args.arrow_batch, 100_000)))
    conf.set("pipeline.object-reuse", "true")
    conf.set("table.local-time-zone", "UTC")
    return t_env


def ddl(t_env, rows: int, sensors: int, models_csv: Path, variant: str, doc: dict) -> None:
    t_env.execute_sql(f"""
        CREATE TEMPORARY TABLE readings (
          id BIGINT,
          `value` DOUBLE,
          rh DOUBLE,
          sensor_key AS CONCAT('s', LPAD(CAST(MOD(id, {sensors}) AS STRING), 3, '0')),
          ts_ms AS {T0_MS} + id * {STEP_MS},
          ts AS TO_TIMESTAMP_LTZ({T0_MS} + id * {STEP_MS}, 3),
          WATERMARK FOR ts AS ts - INTERVAL '1' SECOND
        ) WITH (
          'connector' = 'datagen',
          'rows-per-second' = '100000000',
          'fields.id.kind' = 'sequence', 'fields.id.start' = '0', 'fields.id.end' = '{rows - 1}',
          'fields.value.min' = '0', 'fields.value.max' = '300',
          'fields.rh.min' = '10', 'fields.rh.max' = '100'
        )""")
    t_env.execute_sql("""
        CREATE TEMPORARY TABLE sink (sensor_key STRING, ts_ms BIGINT, raw_value DOUBLE, rh DOUBLE, cal DOUBLE)
        WITH ('connector' = 'blackhole')""")
    if variant == "b":
        t_env.execute_sql(f"""
            CREATE TEMPORARY TABLE model_log (
              sensor_key STRING, version INT, eff_ms BIGINT, gain DOUBLE, model_offset DOUBLE,
              effective_from AS TO_TIMESTAMP_LTZ(eff_ms, 3),
              WATERMARK FOR effective_from AS effective_from
            ) WITH ('connector' = 'filesystem', 'path' = '{models_csv.as_uri()}', 'format' = 'csv')""")
        t_env.execute_sql("""
            CREATE TEMPORARY VIEW sensor_models AS
            SELECT sensor_key, version, gain, model_offset, effective_from FROM (
              SELECT *, ROW_NUMBER() OVER (PARTITION BY sensor_key ORDER BY effective_from DESC) AS rn
              FROM model_log)
            WHERE rn = 1""")
    if variant == "c":
        t_env.create_temporary_function("registry_calibrate", calibrate_udf(doc))


SELECTS = {
    "a": "SELECT sensor_key, ts_ms, `value`, rh, `value` AS cal FROM readings",
    "b": """SELECT r.sensor_key, r.ts_ms, r.`value`, r.rh, m.gain * r.`value` + m.model_offset AS cal
            FROM readings AS r JOIN sensor_models FOR SYSTEM_TIME AS OF r.ts AS m ON r.sensor_key = m.sensor_key""",
    "c": "SELECT sensor_key, ts_ms, `value`, rh, registry_calibrate(sensor_key, ts_ms, `value`, rh) AS cal FROM readings",
}


def run(args: argparse.Namespace, variant: str, rows: int, workdir: Path) -> float:
    """Wall time (s) of one run's execute().wait() (planning, submission, start-up, processing)."""
    models = make_models(args.sensors, rows)
    csv = workdir / f"models-{rows}.csv"
    if not csv.exists():
        models.to_csv(csv, header=False, index=False)
    t_env = make_env(args)
    ddl(t_env, rows, args.sensors, csv, variant, registry_doc(models) if variant == "c" else {})
    t0 = time.perf_counter()
    t_env.execute_sql(f"INSERT INTO sink {SELECTS[variant]}").wait()
    return time.perf_counter() - t0


def check(args: argparse.Namespace, workdir: Path) -> dict[str, str]:
    """Collect a small sample of each variant and compare against numpy."""
    rows = args.check_rows
    models = make_models(args.sensors, rows)
    csv = workdir / f"models-{rows}.csv"
    models.to_csv(csv, header=False, index=False)
    out = {}
    for v in VARIANTS:
        t_env = make_env(args)
        ddl(t_env, rows, args.sensors, csv, v, registry_doc(models) if v == "c" else {})
        df = t_env.sql_query(SELECTS[v]).to_pandas().sort_values("ts_ms").reset_index(drop=True)
        keys, t = df.sensor_key.to_numpy(dtype=object), df.ts_ms.to_numpy(dtype=np.int64)
        raw = df["value"].to_numpy(dtype=np.float64)
        want, version = expected(models, keys, t, raw)
        if v == "a":
            want = raw
        ids = (t - T0_MS) // STEP_MS
        keys_ok = np.array_equal(keys, np.array([station(int(i) % args.sensors) for i in ids], dtype=object))
        err = float(np.nanmax(np.abs(df.cal.to_numpy(dtype=np.float64) - want))) if len(df) else float("nan")
        ok = len(df) == rows and np.array_equal(ids, np.arange(rows)) and keys_ok and np.allclose(df.cal, want, rtol=1e-12, atol=1e-9)
        used = ", ".join(f"v{k}: {n:,}" for k, n in zip(*np.unique(version, return_counts=True)))
        out[v] = f"{'OK ' if ok else 'FAIL'} rows {len(df):,}/{rows:,}, max |cal - numpy| {err:.2e}" + ("" if v == "a" else f" (rows per version {used})")
        print(f"check {LABELS[v]:<26} {out[v]}", flush=True)
        if not ok:
            raise SystemExit(f"correctness check failed for ({v})")
    return out


def rate(args: argparse.Namespace, t_small: float, t_big: float) -> float:
    """rows/s excluding start-up; NaN when the big run was not slower than the tiny one (noise)."""
    return (args.rows - args.startup_rows) / (t_big - t_small) if t_big > t_small else float("nan")


def numpy_cost(args: argparse.Namespace, shared: bool = False, batch: int = 1_000, repeat: int = 100) -> float:
    """Seconds per `batch` rows of the UDF body alone (sensor_codes + Registry.calibrate, one parameter),
    outside Flink: what Arrow transfer and the Python worker add on top is (c) minus this."""
    from calibration.registry import parse_registry

    models = make_models(args.sensors, args.rows, shared=shared)
    reg = parse_registry(registry_doc(models), "<join-bench>")
    rng = np.random.default_rng(1)
    ids = np.arange(batch) + args.rows // 2
    keys = np.array([station(int(i) % args.sensors) for i in ids], dtype=object)
    t, value, rh = T0_MS + ids * STEP_MS, rng.uniform(0, 300, batch), rng.uniform(10, 100, batch)
    t0 = time.perf_counter()
    for _ in range(repeat):
        codes = reg.sensor_codes(keys, np.full(keys.shape, PARAMETER, dtype=object))
        reg.calibrate(codes, t, value, {"rh": rh})
    return (time.perf_counter() - t0) / repeat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows per timed run [1,000,000]")
    ap.add_argument("--startup-rows", type=int, default=1_000, help="rows of the start-up baseline run [1,000]")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds over (a), (b), (c) [3]")
    ap.add_argument("--sensors", type=int, default=200, help="distinct sensors [200]")
    ap.add_argument("--check-rows", type=int, default=3_000, help="rows of the correctness sample [3,000]")
    ap.add_argument("--variants", default="abc", help="subset of abc to time [abc]")
    ap.add_argument("--arrow-batch", type=int, default=0,
                    help="python.fn-execution.arrow.batch.size (0: Flink's default, as the job) [0]")
    ap.add_argument("--no-check", action="store_true")
    args = ap.parse_args()

    # Before the gateway JVM starts: logs out of site-packages, a heap limit, workers find this venv and repo.
    workdir = Path(tempfile.mkdtemp(prefix="jw-join-bench-"))
    os.environ.setdefault("FLINK_LOG_DIR", str(workdir / "logs"))
    os.environ.setdefault("JVM_ARGS", "-Xmx1g")
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    os.environ["PYTHONPATH"] = f"{REPO_ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}".rstrip(os.pathsep)

    load0 = os.getloadavg()
    t_all = time.perf_counter()
    checks = {} if args.no_check else check(args, workdir)
    variants = [v for v in VARIANTS if v in args.variants]
    if args.no_check:  # the first job of a process pays class loading and JIT: keep it out of the timings
        run(args, variants[0], args.startup_rows, workdir)
    small: dict[str, list[float]] = {v: [] for v in variants}
    big: dict[str, list[float]] = {v: [] for v in variants}
    for r in range(args.rounds):
        for v in variants:
            ts = run(args, v, args.startup_rows, workdir)
            tb = run(args, v, args.rows, workdir)
            small[v].append(ts)
            big[v].append(tb)
            print(f"round {r + 1} {LABELS[v]:<26} start-up run {ts:6.2f} s   {args.rows:,} rows {tb:6.2f} s   "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)
    load1 = os.getloadavg()

    print(f"\n{args.rows:,} rows, {args.sensors} sensors x {VERSIONS} versions, parallelism 1, {args.rounds} rounds, "
          f"arrow batch {args.arrow_batch or 'default'}; medians")
    head = f"{'variant':<27}{'start-up s':>11}{'total s':>9}{'rows/s incl.':>14}{'rows/s excl.':>14}{'vs (a)':>8}{'readings/s*':>13}"
    print(head)
    print("-" * len(head))
    excl: dict[str, float] = {}
    for v in variants:
        rates = [rate(args, s, b) for s, b in zip(small[v], big[v])]
        excl[v] = statistics.median([x for x in rates if x == x] or [float("nan")])
        incl = statistics.median(args.rows / b for b in big[v])
        rel = f"{excl[v] / excl['a']:7.2f}" if "a" in excl else "      -"
        per_reading = f"{excl[v] * 17:13,.0f}" if v == "c" else f"{'':>13}"
        print(f"{LABELS[v]:<27}{statistics.median(small[v]):>11.2f}{statistics.median(big[v]):>9.2f}"
              f"{incl:>14,.0f}{excl[v]:>14,.0f}{rel:>8}{per_reading}")
    print("* (c) x 17: the job applies the UDF per station-minute row (~11 calibrated parameters per row; the network"
          " sends ~17 readings per station-minute), so per reading roughly rows/s x 17 (an upper bound: this row has 1 parameter)")
    print("per-round rows/s excl.: " + "; ".join(
        f"({v}) " + ", ".join(f"{rate(args, s, b):,.0f}" for s, b in zip(small[v], big[v]))
        for v in variants))
    for shared in (False, True):
        per_batch = numpy_cost(args, shared)
        what = f"{VERSIONS} models shared by all sensors" if shared else f"{args.sensors * VERSIONS} distinct models (as timed)"
        print(f"UDF body alone (numpy, no Flink), 1,000-row batch, one parameter, {what}: {per_batch * 1e3:.2f} ms "
              f"= {1_000 / per_batch:,.0f} rows/s")
    print("  (the job's UDF runs this once per parameter, ~11 per station-minute batch)")
    for v, msg in checks.items():
        print(f"check ({v}): {msg}")
    print(f"load average (1/5/15 min) before {load0[0]:.1f}/{load0[1]:.1f}/{load0[2]:.1f}, "
          f"after {load1[0]:.1f}/{load1[1]:.1f}/{load1[2]:.1f} on {os.cpu_count()} cores; bench took {time.perf_counter() - t_all:.0f} s")


if __name__ == "__main__":
    main()
