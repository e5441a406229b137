"""PyFlink wiring of the alignment + station-window job.

Runs embedded (MiniCluster) with `python -m jobs.pipeline ...` or
`jointwatch job run`, and on a standalone cluster with
`flink run -py jobs/pipeline.py -- ...`. Only statement assembly is Python;
records never pass through a Python operator. The job makes no alerts: the
index stage and the alert stage (Python, low rate) work from its outputs.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyflink.table import StatementSet

if __package__ in (None, ""):  # `flink run -py jobs/pipeline.py` runs this file as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobs.alignment import load_alignment, parse_alignment
from jobs.sql import DEFAULT_OUTPUTS, OUTPUTS, JobOptions, statements
from jobs.validity import INDEX_PARAMETERS
from schemas.errors import ConfigError
from schemas.network import load_network
from schemas.topics import CALIBRATION

log = logging.getLogger("jointwatch.job")
REPO_ROOT = Path(__file__).resolve().parent.parent


def connector_jars(deps_dir: Path) -> list[Path]:
    jars = sorted((deps_dir / "flink").glob("flink-sql-connector-kafka-*.jar"))
    if not jars:
        raise SystemExit(f"no flink-sql-connector-kafka jar in {deps_dir / 'flink'}: run `make setup`")
    return jars


def build(opts: JobOptions, deps_dir: Path, checkpoint_dir: Path | None, parallelism: int, outputs: tuple[str, ...] = DEFAULT_OUTPUTS) -> StatementSet:
    from pyflink.table import EnvironmentSettings, TableEnvironment

    t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    conf = t_env.get_config()
    conf.set("pipeline.name", f"jointwatch-align{'-' + opts.namespace if opts.namespace else ''}")
    conf.set("pipeline.jars", ";".join(p.as_uri() for p in connector_jars(deps_dir)))
    conf.set("table.local-time-zone", "UTC")  # window bounds render, and clock hours align, in UTC whatever the host's zone
    conf.set("parallelism.default", str(parallelism))
    conf.set("execution.checkpointing.interval", "10 s")
    conf.set("pipeline.object-reuse", "true")
    # No table.exec.mini-batch: its assigner emits processing-time watermarks here, which
    # CURRENT_WATERMARK (the late-reading split) would then read as event time.
    if checkpoint_dir is not None:
        conf.set("execution.checkpointing.dir", checkpoint_dir.resolve().as_uri())
    if opts.calibrate:
        from jobs.calibration_udf import UDF_NAME, calibrate_udf

        conf.set("python.executable", sys.executable)  # the workers import numpy, pandas and this repo's packages
        conf.set("python.fn-execution.bundle.time", "200")  # ms a batch may wait in the Python operator (latency)
        t_env.create_temporary_function(UDF_NAME, calibrate_udf(opts.bootstrap, opts.topic(CALIBRATION), opts.calibration_unlisted, INDEX_PARAMETERS))
    ddl, inserts = statements(opts, outputs)
    for stmt in ddl:
        t_env.execute_sql(stmt)
    stmt_set = t_env.create_statement_set()
    for stmt in inserts:
        stmt_set.add_insert_sql(stmt)
    return stmt_set


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="jobs.pipeline", description="jointwatch alignment + station-window job (Flink SQL)")
    p.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers")
    p.add_argument("--namespace", default="", help="topic namespace prefix (replays, tests)")
    p.add_argument("--group-id", default="jw-align")
    p.add_argument("--deps-dir", type=Path, default=REPO_ROOT / ".deps")
    p.add_argument("--checkpoint-dir", type=Path, default=None)
    p.add_argument("--parallelism", type=int, default=1)
    p.add_argument("--alignment", type=Path, default=REPO_ROOT / "config" / "alignment.yaml",
                   help="event-time settings (out-of-orderness, allowed lateness, idleness); the flags below override it")
    p.add_argument("--network", type=Path, default=REPO_ROOT / "config" / "network.yaml", help="station registry (sampling intervals)")
    p.add_argument("--out-of-orderness", type=int, default=None, help="seconds")
    p.add_argument("--allowed-lateness", type=int, default=None, help="minutes")
    p.add_argument("--idle-timeout", type=int, default=None, help="seconds")
    p.add_argument("--startup-mode", default="group-offsets", choices=["group-offsets", "earliest-offset", "latest-offset"])
    p.add_argument("--outputs", default=",".join(DEFAULT_OUTPUTS),
                   help=f"comma-separated subset of {','.join(OUTPUTS)} (rolling, the per-parameter rolling hour, is opt-in)")
    p.add_argument("--no-calibration", dest="calibrate", action="store_false",
                   help="aligned only: no calibration, QC or station-minute output (benchmarks compare the two)")
    p.add_argument("--unlisted-sensors", default="pass", choices=["pass", "flag"],
                   help="sensors the calibration registry does not list: pass their values, or flag them calibration missing")
    p.add_argument("--detached", action="store_true", help="submit and return (cluster mode)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    flags = {"out_of_orderness_s": args.out_of_orderness, "allowed_lateness_min": args.allowed_lateness, "source_idle_s": args.idle_timeout}
    try:
        network = load_network(args.network)
        configured = asdict(load_alignment(args.alignment))
        # the flags override the file, checked by the same rules
        alignment = parse_alignment({"version": 1, **configured, **{k: v for k, v in flags.items() if v is not None}}, "command line")
    except ConfigError as exc:
        raise SystemExit(f"jobs.pipeline: {exc}") from None
    opts = JobOptions(
        args.bootstrap, args.namespace, args.group_id,
        out_of_orderness_s=alignment.out_of_orderness_s,
        source_idle_s=alignment.source_idle_s,
        startup_mode=args.startup_mode,
        allowed_lateness_min=alignment.allowed_lateness_min,
        sampling_s=tuple(sorted((st.id, st.sampling_s) for st in network.stations.values())),
        calibrate=args.calibrate,
        calibration_unlisted=args.unlisted_sensors,
    )
    log.info("event time: out-of-orderness %d s, allowed lateness %d min, idle timeout %d s",
             opts.out_of_orderness_s, opts.allowed_lateness_min, opts.source_idle_s)
    result = build(opts, args.deps_dir, args.checkpoint_dir, args.parallelism, tuple(args.outputs.split(","))).execute()
    job_id = result.get_job_client().get_job_id() if result.get_job_client() else None
    log.info("submitted job %s", job_id)
    if not args.detached:
        result.wait()


if __name__ == "__main__":
    main()
