"""`jointwatch calibration validate|show` on the shipped registry and on a broken one."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from jointwatch.cli import main
from jointwatch.settings import REPO_ROOT

REGISTRY = str(REPO_ROOT / "config" / "calibration.yaml")


def row(output: str, sensor: str) -> list[str]:
    return [re.split(r"\s{2,}", line.strip()) for line in output.splitlines() if line.startswith(sensor + " ")][0]


def test_validate_prints_every_version_with_its_span() -> None:
    result = CliRunner().invoke(main, ["calibration", "validate", REGISTRY], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "registry demo, 9 sensors, 11 model versions" in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("n-a03/pm25 ")]
    # n-a03 changes from EPA 2021 to 2022 at 2026-09-01 00:00 Prague (CEST) = 2026-08-31T22:00Z
    assert re.split(r"\s{2,}", lines[0]) == ["n-a03/pm25", "1", "epa-purpleair-2021", "2025-12-31T23:00:00Z", "2026-08-31T22:00:00Z", "epa_purpleair_2021"]
    assert re.split(r"\s{2,}", lines[1]) == ["n-a03/pm25", "2", "epa-purpleair-2022", "2026-08-31T22:00:00Z", "-", "epa_purpleair_2022"]


def test_show_at_a_time() -> None:
    runner = CliRunner()
    before = runner.invoke(main, ["calibration", "show", REGISTRY, "--at", "2026-08-31T23:59:59.999+02:00"])
    at = runner.invoke(main, ["calibration", "show", REGISTRY, "--at", "2026-09-01T00:00:00+02:00"])
    early = runner.invoke(main, ["calibration", "show", REGISTRY, "--at", "2025-06-01T00:00:00Z"])
    assert before.exit_code == at.exit_code == early.exit_code == 0
    assert row(before.output, "n-a03/pm25")[1:3] == ["1", "epa-purpleair-2021"]
    assert row(at.output, "n-a03/pm25")[1:3] == ["2", "epa-purpleair-2022"]
    assert row(early.output, "n-a03/pm25")[-1] == "none in effect: calibration missing"
    bad = runner.invoke(main, ["calibration", "show", REGISTRY, "--at", "2026-09-01T00:00:00"])
    assert bad.exit_code == 2 and "has no zone offset" in bad.output


def test_validate_reports_file_key_reason_and_exits_1(tmp_path: Path) -> None:
    f = tmp_path / "cal.yaml"
    f.write_text(Path(REGISTRY).read_text().replace("station_id: n-a07", "station_id: n-a77"))
    result = CliRunner().invoke(main, ["calibration", "validate", str(f)])
    assert result.exit_code == 1
    assert f"{f}: sensors[1].station_id: unknown station 'n-a77'" in result.output
