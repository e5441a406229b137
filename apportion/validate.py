"""`python -m apportion.validate`: recovery against known truth, printed and written to docs/apportionment_validation.md.

Transport: simulated 20-day runs of the demo network (apportion.synthetic.air_network)
on seeds not looked at while tuning the method (seeds 1, 2, 5, 6, 8 were; 11-14 and 21-24
were reported on earlier versions), every air station a receptor, 24 h windows every 6 h.
Factors: synthetic X = G F + noise, matched to the truth by the Hungarian assignment on
correlation. Water: the demo river with known reach inputs. The benchmark section is
written by bench/apportion_bench.py and kept when this report is rewritten.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from apportion import pmf
from apportion.synthetic import AirScenario, air_network, demo_episode, factor_data
from apportion.transport import MODEL_VERSION, TransportConfig, WindowSolver, combine_region
from apportion.water import attribute_reaches, river_sections
from schemas.network import Network, load_network

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "docs" / "apportionment_validation.md"
BENCH_START, BENCH_END = "<!-- bench:start -->", "<!-- bench:end -->"
SEEDS = (31, 32, 33, 34)
EPISODE, STRONG, CLEAN = 0.2, 0.3, 0.05  # true top external share for an episode window / a strong one; total external below CLEAN = clean


@dataclass
class TransportStats:
    errors_all: list[float]
    errors_strong: list[float]
    covered: list[bool]  # truth inside the 5-95 % bootstrap interval (episode windows)
    origin_episode: list[bool]
    origin_strong: list[bool]
    false_clean: list[bool]
    region_origin: list[bool]
    region_false: list[bool]
    seconds: float = 0.0


def _transport(network: Network, seeds: tuple[int, ...], days: int, cfg: TransportConfig) -> TransportStats:
    st = TransportStats([], [], [], [], [], [], [], [])
    t_start = time.perf_counter()
    for seed in seeds:
        sc = air_network(network, n_hours=24 * days, seed=seed)
        _score_scenario(sc, cfg, st)
    st.seconds = time.perf_counter() - t_start
    return st


def _score_scenario(sc: AirScenario, cfg: TransportConfig, st: TransportStats) -> None:
    series = sc.series
    regions = list(dict.fromkeys(s.region for s in sc.stations))
    for t0 in range(24, series.conc.shape[1] - 24, 6):
        t1 = t0 + 24
        solver = WindowSolver(series, t0, t1, cfg)
        by_region: dict[str, list] = {r: [] for r in regions}
        for j, station in enumerate(sc.stations):
            truth = sc.external_truth(j, t0, t1)
            res = solver.solve(j)
            by_region[station.region].append(res)
            top = max(truth, key=lambda r: truth[r])
            errs = [res.shares.get(r, 0.0) - v for r, v in truth.items()]  # signed: estimate - truth
            st.errors_all += errs
            if truth[top] >= STRONG:
                st.errors_strong += errs
                st.origin_strong.append(res.origin_region == top)
            if truth[top] >= EPISODE:
                st.origin_episode.append(res.origin_region == top)
                lo, hi = res.share_interval.get(top, (0.0, 0.0))
                st.covered.append(lo <= truth[top] <= hi)
            if sum(truth.values()) < CLEAN:
                st.false_clean.append(res.origin_region is not None)
        for region, results in by_region.items():
            members = [j for j, s in enumerate(sc.stations) if s.region == region]
            total = sc.conc[members, t0:t1].sum()
            truth = {r: float(c[members, t0:t1].sum() / total) for r, c in sc.truth.items() if r != region}
            top = max(truth, key=lambda r: truth[r])
            combined = combine_region(results, cfg)
            if truth[top] >= EPISODE:
                st.region_origin.append(combined.origin_region == top)
            elif sum(truth.values()) < CLEAN:
                st.region_false.append(combined.origin_region is not None)


def _demo(network: Network, cfg: TransportConfig) -> list[str]:
    """The simulator's own plume episode, region by region, in four 6 h windows of 10-minute means."""
    series, plume = demo_episode(network)
    rows = []
    for t0, t1 in ((0, 36), (6, 42), (12, 48), (36, 72)):
        solver = WindowSolver(series, t0, t1, cfg)
        for region in ("north", "central", "south"):
            idx = [j for j, s in enumerate(series.stations) if s.region == region]
            res = combine_region([solver.solve(j) for j in idx], cfg)
            true_share = float(plume[idx, t0:t1].sum() / series.conc[idx, t0:t1].sum())
            truth = "none (the plume is local)" if region == "north" else ("north" if true_share >= EPISODE else ("none" if true_share < CLEAN else "weak"))
            rows.append(f"| {t0 // 6}-{t1 // 6} h | {region} | {truth} | {true_share:.2f} | {res.shares.get('north', 0.0):.2f} | {res.origin_region or 'none'} |")
    return rows


def _match(est: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hungarian assignment on correlation: (matched correlations per true factor, est index per true factor)."""
    p = true.shape[0]
    c = np.corrcoef(est, true)[:p, p:]
    rows, cols = linear_sum_assignment(-c)
    order = np.argsort(cols)
    return c[rows, cols][order], rows[order]


def factor_scores(G: np.ndarray, F: np.ndarray, G_true: np.ndarray, F_true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Profile and contribution correlations per true factor, after matching on profiles."""
    f_corr, idx = _match(F, F_true)
    g_corr = np.array([np.corrcoef(G[:, i], G_true[:, k])[0, 1] for k, i in enumerate(idx)])
    return f_corr, g_corr


def _factors() -> list[tuple[str, np.ndarray, np.ndarray, float, float, float]]:
    rows = []
    for label, kwargs in (("clean, seed 0", {"seed": 0}), ("clean, seed 1", {"seed": 1}), ("clean, seed 2", {"seed": 2}),
                          ("2 % outliers, seed 3", {"seed": 3, "outliers": 0.02}), ("clean, seed 40", {"seed": 40}),
                          ("clean, seed 41", {"seed": 41}), ("2 % outliers, seed 42", {"seed": 42, "outliers": 0.02})):
        d = factor_data(n=720, m=20, k=4, **kwargs)
        t = time.perf_counter()
        r = pmf.fit(d.X, d.U, 4, seed=0, restarts=5)
        elapsed = time.perf_counter() - t
        f_corr, g_corr = factor_scores(r.G, r.F, d.G, d.F)
        rows.append((label, f_corr, g_corr, r.Q / r.Q_exp, r.Q_robust / r.Q_exp, elapsed))
    return rows


def _water(network: Network) -> tuple[list[tuple[str, str, float, float]], str]:
    """Known reach inputs on the demo river: each reach adds a constant load, the inflow varies."""
    sections = river_sections(network)
    rng = np.random.default_rng(21)
    n, velocity = 24 * 6, 3.0
    steps = np.arange(n, dtype=float)
    inflow = 1.0 + 0.5 * np.sin(2 * np.pi * steps / 17.0)  # mg/L at the first section, varying so the lag matters
    flow = np.full((len(sections), n), 20.0)
    added = rng.uniform(0.05, 0.4, len(sections) - 1)  # true concentration added by each reach at constant flow
    conc = np.empty((len(sections), n))
    for k, s in enumerate(sections):
        assert s.river_km is not None and sections[0].river_km is not None
        travel = (s.river_km - sections[0].river_km) / velocity
        conc[k] = np.interp(steps - travel, steps, inflow) + added[:k].sum()
    noisy = conc * (1 + 0.02 * rng.standard_normal(conc.shape))
    res = attribute_reaches(sections, noisy, 48, n, 1.0, velocity, "nh3n", "mg/L", flow=flow)
    rows = [(f"{r.upstream}>{r.downstream}", "/".join(r.regions), added[k] * 20.0 * 86.4, r.addition) for k, r in enumerate(res.reaches)]
    summary = ", ".join(f"{region} {v:.0f} kg/d" for region, v in res.by_region.items())
    return rows, summary


def _met(ok: object) -> str:
    """'met' / 'MISSED' for a target: every share error within 10 pp is the strict reading of the issue's target."""
    return "met" if bool(ok) else "MISSED"


def _pct(x: list[bool] | list[float]) -> str:
    return f"{100.0 * float(np.mean(x)):.1f} %" if len(x) else "n/a"


def render(st: TransportStats, demo: list[str], factors: list, water: tuple[list, str], cfg: TransportConfig, days: int, bench: str) -> str:
    signed = np.array(st.errors_all)
    ea, es = np.abs(signed), np.abs(np.array(st.errors_strong))
    big = signed[ea > 0.10]
    lines = [
        "# Apportionment validation (issue 6)",
        "",
        "Written by `uv run python -m apportion.validate` (the benchmark section by `uv run python -m bench.apportion_bench`).",
        "Every number below was measured by those scripts on synthetic data with known truth; nothing is",
        "carried over from elsewhere. Each target from the issue is marked met or MISSED.",
        "",
        f"## Transport attribution (air), model `{MODEL_VERSION}`",
        "",
        f"Demo network (30 air stations, 3 regions), {days}-day simulations on seeds {', '.join(map(str, SEEDS))}",
        "(settings were tuned on seeds 1, 2, 6 and 8 and failure cases inspected on them and on 5; seeds 11-14 and",
        "21-24 were reported on earlier versions; these seeds were not looked at before this report), every station",
        f"a receptor, 24 h windows every 6 h, {cfg.n_boot} block-bootstrap replicates. Episode window: the top other region's true share",
        f"of the receptor's window mean is >= {EPISODE}; strong: >= {STRONG}; clean: all other regions together < {CLEAN}.",
        "",
        "| measure | value | target | met? |",
        "|---|---|---|---|",
        f"| share error, all receptor x window x region pairs (n = {ea.size}) | mean {100 * ea.mean():.1f} pp, p90 {100 * np.quantile(ea, 0.9):.1f} pp, max {100 * ea.max():.1f} pp; within 10 pp: {_pct(list(ea <= 0.10))} | within +-10 pp | {_met(ea.size and np.all(ea <= 0.10))} |",
        f"| share error, strong episode windows (n = {es.size} pairs) | mean {100 * es.mean():.1f} pp, median {100 * np.median(es):.1f} pp, p90 {100 * np.quantile(es, 0.9):.1f} pp; within 10 pp: {_pct(list(es <= 0.10))} | within +-10 pp | {_met(es.size and np.all(es <= 0.10))} |",
        f"| origin region correct, episode windows (n = {len(st.origin_episode)}) | {_pct(st.origin_episode)} | >= 95 % | {_met(np.mean(st.origin_episode) >= 0.95)} |",
        f"| origin region correct, strong episode windows (n = {len(st.origin_strong)}) | {_pct(st.origin_strong)} | >= 95 % | {_met(np.mean(st.origin_strong) >= 0.95)} |",
        f"| false origin, clean windows (n = {len(st.false_clean)}) | {_pct(st.false_clean)} | <= 5 % | {_met(np.mean(st.false_clean) <= 0.05)} |",
        f"| region level (receptors combined): origin correct in episode windows (n = {len(st.region_origin)}) | {_pct(st.region_origin)} | >= 95 % | {_met(np.mean(st.region_origin) >= 0.95)} |",
        f"| region level: false origin in clean windows (n = {len(st.region_false)}) | {_pct(st.region_false)} | <= 5 % | {_met(np.mean(st.region_false) <= 0.05)} |",
        f"| pairs off by more than 10 pp that are under-estimates (n = {big.size}) | {_pct(list(big < 0)) if big.size else 'n/a'} | | |",
        f"| true top share inside the 5-95 % bootstrap interval, episode windows (n = {len(st.covered)}) | {_pct(st.covered)} | 90 % if calibrated | (no target) |",
        "",
        f"Run time of this part: {st.seconds:.1f} s.",
        "",
        "Reading the numbers: the sign of the large errors is in the table. A candidate counts only while the",
        f"line the wind draws through it passes within {cfg.crosswind_km:g} km of the receptor (chosen on the tuning seeds);",
        "before that rule most large errors were regions credited with a share they never sent, through stations",
        "whose air passed tens of km beside the receptor. The over-estimates left, in the cases inspected on the",
        "tuning seeds, are windows without any plume where an upwind station on the wind's line varied with the",
        "receptor by chance (the local level is held near a low quantile of the receptor's week, so what the fit",
        "leaves above it is open to upwind regions); the under-estimates are weak plumes (true share 0.1-0.2) whose",
        "path misses the upwind stations or that the coefficient cap holds low. Each bootstrap replicate repeats",
        "the station choice on its resampled hours (each station at the window's lag), and every receptor is",
        "resampled at the same hours, so region-level intervals keep what the receptors share.",
        "",
        "### The demo's own episode (simulator/scenario.py)",
        "",
        "The project simulator's plume from the works in `north` (3 h, northerly wind), PM2.5 as 10-minute means",
        "of the measured (uncalibrated) values; regions combined from their receptors. The true share is the",
        "simulator's plume contribution over the region's summed concentration (for `north` the plume is local).",
        "",
        "| window | region | true origin | true plume share | estimated north share | estimated origin |",
        "|---|---|---|---|---|---|",
        *demo,
        "",
        "## Source-type factors (PMF-style weighted NMF), model `" + pmf.MODEL_VERSION + "`",
        "",
        "X = G F + noise, 720 hours x 20 species x 4 factors, noise drawn with the uncertainty U; 5 random",
        "starts, robust mode. Factors matched to the truth by the Hungarian assignment on profile correlation.",
        "The solver (HALS with extrapolation) was chosen looking at data seeds 0-3 and checked on seeds 10-21;",
        "seeds 40-42 were not looked at before this report.",
        "",
        "| data | profile r per factor | min profile r | contribution r per factor | min contribution r | Q/Qexp | Q(robust)/Qexp | time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, f_corr, g_corr, q_ratio, qr_ratio, elapsed in factors:
        lines.append(f"| {label} | {' '.join(f'{c:.3f}' for c in f_corr)} | {f_corr.min():.3f} | {' '.join(f'{c:.3f}' for c in g_corr)} | {g_corr.min():.3f} | {q_ratio:.3f} | {qr_ratio:.3f} | {elapsed:.2f} s |")
    rows, summary = water
    lines += [
        "",
        "## River reaches (water)",
        "",
        "Demo river sections, 20 m3/s, a varying inflow (so the travel-time lag matters), each reach adding a known",
        "constant load, 2 % measurement noise; 4-day window after a 2-day run-in. Border reaches belong to the",
        "upstream region (the border section measures what it delivers).",
        "",
        "| reach | responsible region | true addition kg/d | recovered kg/d |",
        "|---|---|---|---|",
        *(f"| {reach} | {region} | {true:.1f} | {got:.1f} |" for reach, region, true, got in rows),
        "",
        f"Per region: {summary}.",
        "",
        "## Benchmark",
        "",
        BENCH_START,
        bench or "Not run yet: `uv run python -m bench.apportion_bench --write-report`.",
        BENCH_END,
        "",
    ]
    return "\n".join(lines)


def bench_section(text: str) -> str:
    if BENCH_START in text and BENCH_END in text:
        return text.split(BENCH_START, 1)[1].split(BENCH_END, 1)[0].strip()
    return ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=20)
    ap.add_argument("--network", default=str(ROOT / "config" / "network.yaml"))
    ap.add_argument("--report", default=str(REPORT))
    args = ap.parse_args()
    network = load_network(args.network)
    cfg = TransportConfig()
    st = _transport(network, SEEDS, args.days, cfg)
    report = Path(args.report)
    old = report.read_text() if report.exists() else ""
    text = render(st, _demo(network, cfg), _factors(), _water(network), cfg, args.days, bench_section(old))
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
