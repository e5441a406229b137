"""Apportionment benchmark (issue 6), on this machine: `uv run python -m bench.apportion_bench`.

1. Transport: one region window on a 100-station network (4 regions x 25 air stations,
   synthetic, 24 h hourly window, 200 bootstrap replicates): the window's shared work
   (background, increments, transit removal over all 100 stations) plus every receptor of
   one region and the region's combined result, as the stage asks for them (solve per
   receptor; the solver does a region's receptors in one pass). The whole-network window
   (all 100 receptors, a fresh solver) is timed too. Median of several windows.
2. Factors: our weighted HALS (apportion.pmf.fit, 5 starts) against US EPA's ESAT ls-nmf
   (5 models, its default stopping rule) on the same synthetic X/U, same machine, single
   process each. ESAT runs in its own environment (bench/esat_run.py through
   `uv run --isolated --no-project --with esat`), both its compiled ("rust") update, which
   BatchSA uses, and its numpy ("python") one. Recovery: Hungarian match on profile
   correlation, then profile and contribution correlations per factor.
`--write-report` puts the printed results into docs/apportionment_validation.md.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from apportion import pmf
from apportion.synthetic import air_network, factor_data
from apportion.transport import TransportConfig, WindowSolver, combine_region
from apportion.validate import BENCH_END, BENCH_START, REPORT, factor_scores
from schemas.network import Network, parse_network

ROOT = Path(__file__).resolve().parents[1]


def network_100() -> Network:
    """4 regions in a 2 x 2 block layout ~60 km apart, 25 stations each on a jittered grid."""
    rng = np.random.default_rng(0)
    regions = [{"id": f"r{k}", "timezone": "UTC"} for k in range(4)]
    stations = []
    for k in range(4):
        lat0, lon0 = 49.0 + 0.55 * (k // 2), 17.0 + 0.8 * (k % 2)
        for i in range(25):
            stations.append({"id": f"r{k}-a{i:02d}", "region": f"r{k}", "medium": "air",
                             "lat": float(lat0 + 0.09 * (i // 5) + rng.normal(0, 0.01)),
                             "lon": float(lon0 + 0.13 * (i % 5) + rng.normal(0, 0.015)), "parameters": ["pm25"]})
    return parse_network({"version": 1, "regions": regions, "stations": stations}, Path("bench-100.yaml"))


def bench_transport(windows: int = 7) -> list[str]:
    scenario = air_network(network_100(), n_hours=24 * 8, seed=0, episodes_per_region=1)
    series, cfg = scenario.series, TransportConfig()
    region_idx = [j for j, s in enumerate(scenario.stations) if s.region == "r0"]
    prep, region_total, network_total = [], [], []
    for t0 in np.linspace(24, series.conc.shape[1] - 24, windows).astype(int):
        t = time.perf_counter()
        solver = WindowSolver(series, int(t0), int(t0) + 24, cfg)
        t_prep = time.perf_counter()
        combine_region([solver.solve(j) for j in region_idx], cfg)
        t_region = time.perf_counter()
        # A fresh solver: the first one keeps the region's receptors it has solved.
        solver = WindowSolver(series, int(t0), int(t0) + 24, cfg)
        for j in range(len(scenario.stations)):
            solver.solve(j)
        t_all = time.perf_counter()
        prep.append(t_prep - t)
        region_total.append(t_region - t)
        network_total.append(t_all - t_region)
    med = statistics.median
    return [
        f"transport, 100-station network, 24 h window, {cfg.n_boot} bootstrap replicates, median of {windows} windows:",
        f"  shared window work (background, increments, transit removal of 100 stations): {1000 * med(prep):.1f} ms",
        f"  one region window (shared work + 25 receptors + region result): {1000 * med(region_total):.1f} ms "
        f"(max {1000 * max(region_total):.1f} ms) [target <= 100 ms]",
        f"  whole network window (shared work + all 100 receptors): {1000 * med(network_total):.1f} ms (max {1000 * max(network_total):.1f} ms)",
    ]


def _esat(data: Path, out: Path, factors: int, engine: str) -> tuple[dict | None, str]:
    cmd = ["uv", "run", "--isolated", "--no-project", "--with", "esat", "python", str(ROOT / "bench" / "esat_run.py"),
           str(data), str(out), "--factors", str(factors), "--models", "5", "--engine", engine]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tempfile.gettempdir())
    except subprocess.TimeoutExpired:
        return None, "timed out after 600 s"
    if proc.returncode != 0:
        return None, f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ''}"
    o = np.load(out)
    return {k: o[k] for k in o.files}, ""


def _scores(G: np.ndarray, F: np.ndarray, d) -> tuple[np.ndarray, str]:
    """(profile r min and mean, contribution r min and mean) and their text."""
    f, g = factor_scores(G, F, d.G, d.F)
    stats = np.array([f.min(), f.mean(), g.min(), g.mean()])
    return stats, f"profile r min {f.min():.3f} mean {f.mean():.3f}, contribution r min {g.min():.3f} mean {g.mean():.3f}"


def bench_factors(seeds: tuple[int, ...] = (0, 1), repeats: int = 3) -> list[str]:
    lines = ["factors, X 720 h x 20 species, 4 factors, 5 starts/models each, single process:"]
    q_exp = pmf.q_expected(720, 20, 4)
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            d = factor_data(n=720, m=20, k=4, seed=seed)
            data = Path(tmp) / f"x{seed}.npz"
            np.savez(data, X=d.X, U=d.U)
            times = []
            for _ in range(repeats):
                t = time.perf_counter()
                ours = pmf.fit(d.X, d.U, 4, seed=0, restarts=5)
                times.append(time.perf_counter() - t)
            ours_s = statistics.median(times)
            ours_stats, ours_text = _scores(ours.G, ours.F, d)
            lines.append(f"  data seed {seed}: ours ({pmf.MODEL_VERSION}) {ours_s:.2f} s (median of {repeats}), Q/Qexp {ours.Q / q_exp:.3f}; {ours_text}")
            for engine in ("rust", "python"):
                res, err = _esat(data, Path(tmp) / f"esat{seed}{engine}.npz", 4, engine)
                if res is None:
                    lines.append(f"  data seed {seed}: ESAT ls-nmf ({engine}) FAILED: {err}")
                    continue
                q_ratio = float(np.sum(((d.X - res["W"] @ res["H"]) / d.U) ** 2)) / q_exp
                stats, text = _scores(res["W"], res["H"], d)
                speedup = float(res["seconds"]) / ours_s
                if q_ratio > 10:  # the returned factors do not reproduce X at all (ESAT's own Q(true) says so too)
                    verdict = f"NOT A FIT of this data (ESAT's own Q(true)/Qexp {float(res['Qtrue']) / q_exp:.1f})"
                else:  # the bar: >= 10x faster, and no recovery statistic worse than ESAT's
                    worse = [name for name, a, b in zip(("profile min", "profile mean", "contribution min", "contribution mean"), ours_stats, stats) if a < b]
                    met = speedup >= 10 and not worse
                    verdict = "[target ours >= 10x faster at equal or better recovery: " + ("met]" if met else
                              f"MISSED: {'speed' if speedup < 10 else ''}{' ' if speedup < 10 and worse else ''}{', '.join(worse) + ' worse' if worse else ''}]")
                lines.append(
                    f"  data seed {seed}: ESAT {res['version']} ls-nmf ({engine}) {float(res['seconds']):.2f} s, "
                    f"steps {'/'.join(map(str, res['steps']))}, Q/Qexp {q_ratio:.3f}; {text}; ESAT time / ours = {speedup:.1f}x {verdict}")
    return lines


def _load() -> str:
    """The 1-minute load average (the machine's cores are shared, so every number depends on it)."""
    path = Path("/proc/loadavg")
    return path.read_text().split()[0] if path.exists() else "n/a"


def write_report(lines: list[str], load: str) -> None:
    text = REPORT.read_text() if REPORT.exists() else ""
    body = f"Measured by `uv run python -m bench.apportion_bench` (2 shared cores; load average {load}):\n\n```\n" + "\n".join(lines) + "\n```"
    if BENCH_START in text:
        head, rest = text.split(BENCH_START, 1)
        text = head + BENCH_START + "\n" + body + "\n" + BENCH_END + rest.split(BENCH_END, 1)[1]
    else:
        text += f"\n## Benchmark\n\n{BENCH_START}\n{body}\n{BENCH_END}\n"
    REPORT.write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write-report", action="store_true", help=f"put the results into {REPORT.relative_to(ROOT)}")
    ap.add_argument("--skip-esat", action="store_true")
    args = ap.parse_args()
    start = _load()
    print(f"load average at the start: {start}", flush=True)
    lines = bench_transport()
    print("\n".join(lines), flush=True)
    if not args.skip_esat:
        factor_lines = bench_factors()
        print("\n".join(factor_lines), flush=True)
        lines += factor_lines
    end = _load()
    print(f"load average at the end: {end}", flush=True)
    if args.write_report:
        write_report(lines, f"{start} at the start, {end} at the end")


if __name__ == "__main__":
    main()
