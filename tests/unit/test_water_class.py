"""GB 3838-2002 surface-water classes: every class limit at, just below and just above.

Vectors worked from GB 3838-2002 Table 1 (STANDARDS.md), independently of
alerts/standards, 0.001 mg/L either side of every limit. A value equal to a
limit belongs to that class: NH3-N 0.5 -> II, 0.501 -> III; DO 5 -> III,
4.999 -> IV. COD and BOD5 share the class I and II limit, so a value at it is
class I. Class 6 = worse than V (劣V).
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner

from alerts.standards.cli import water_class_command
from alerts.standards.tables import DATA_DIR, StandardLookupError, load_water_standard, registry
from alerts.standards.water import parameter_class, water_class
from schemas.errors import ConfigError

STD = registry().water_standard(date(2026, 11, 22))

WATER_VECTORS: list[tuple[str, str, str, int]] = [
    ('do', 'river', '7.499', 2),
    ('do', 'lake', '7.499', 2),
    ('do', 'river', '7.5', 1),
    ('do', 'lake', '7.5', 1),
    ('do', 'river', '7.501', 1),
    ('do', 'lake', '7.501', 1),
    ('do', 'river', '5.999', 3),
    ('do', 'lake', '5.999', 3),
    ('do', 'river', '6', 2),
    ('do', 'lake', '6', 2),
    ('do', 'river', '6.001', 2),
    ('do', 'lake', '6.001', 2),
    ('do', 'river', '4.999', 4),
    ('do', 'lake', '4.999', 4),
    ('do', 'river', '5', 3),
    ('do', 'lake', '5', 3),
    ('do', 'river', '5.001', 3),
    ('do', 'lake', '5.001', 3),
    ('do', 'river', '2.999', 5),
    ('do', 'lake', '2.999', 5),
    ('do', 'river', '3', 4),
    ('do', 'lake', '3', 4),
    ('do', 'river', '3.001', 4),
    ('do', 'lake', '3.001', 4),
    ('do', 'river', '1.999', 6),
    ('do', 'lake', '1.999', 6),
    ('do', 'river', '2', 5),
    ('do', 'lake', '2', 5),
    ('do', 'river', '2.001', 5),
    ('do', 'lake', '2.001', 5),
    ('codmn', 'river', '1.999', 1),
    ('codmn', 'lake', '1.999', 1),
    ('codmn', 'river', '2', 1),
    ('codmn', 'lake', '2', 1),
    ('codmn', 'river', '2.001', 2),
    ('codmn', 'lake', '2.001', 2),
    ('codmn', 'river', '3.999', 2),
    ('codmn', 'lake', '3.999', 2),
    ('codmn', 'river', '4', 2),
    ('codmn', 'lake', '4', 2),
    ('codmn', 'river', '4.001', 3),
    ('codmn', 'lake', '4.001', 3),
    ('codmn', 'river', '5.999', 3),
    ('codmn', 'lake', '5.999', 3),
    ('codmn', 'river', '6', 3),
    ('codmn', 'lake', '6', 3),
    ('codmn', 'river', '6.001', 4),
    ('codmn', 'lake', '6.001', 4),
    ('codmn', 'river', '9.999', 4),
    ('codmn', 'lake', '9.999', 4),
    ('codmn', 'river', '10', 4),
    ('codmn', 'lake', '10', 4),
    ('codmn', 'river', '10.001', 5),
    ('codmn', 'lake', '10.001', 5),
    ('codmn', 'river', '14.999', 5),
    ('codmn', 'lake', '14.999', 5),
    ('codmn', 'river', '15', 5),
    ('codmn', 'lake', '15', 5),
    ('codmn', 'river', '15.001', 6),
    ('codmn', 'lake', '15.001', 6),
    ('cod', 'river', '14.999', 1),
    ('cod', 'lake', '14.999', 1),
    ('cod', 'river', '15', 1),
    ('cod', 'lake', '15', 1),
    ('cod', 'river', '15.001', 3),
    ('cod', 'lake', '15.001', 3),
    ('cod', 'river', '19.999', 3),
    ('cod', 'lake', '19.999', 3),
    ('cod', 'river', '20', 3),
    ('cod', 'lake', '20', 3),
    ('cod', 'river', '20.001', 4),
    ('cod', 'lake', '20.001', 4),
    ('cod', 'river', '29.999', 4),
    ('cod', 'lake', '29.999', 4),
    ('cod', 'river', '30', 4),
    ('cod', 'lake', '30', 4),
    ('cod', 'river', '30.001', 5),
    ('cod', 'lake', '30.001', 5),
    ('cod', 'river', '39.999', 5),
    ('cod', 'lake', '39.999', 5),
    ('cod', 'river', '40', 5),
    ('cod', 'lake', '40', 5),
    ('cod', 'river', '40.001', 6),
    ('cod', 'lake', '40.001', 6),
    ('bod5', 'river', '2.999', 1),
    ('bod5', 'lake', '2.999', 1),
    ('bod5', 'river', '3', 1),
    ('bod5', 'lake', '3', 1),
    ('bod5', 'river', '3.001', 3),
    ('bod5', 'lake', '3.001', 3),
    ('bod5', 'river', '3.999', 3),
    ('bod5', 'lake', '3.999', 3),
    ('bod5', 'river', '4', 3),
    ('bod5', 'lake', '4', 3),
    ('bod5', 'river', '4.001', 4),
    ('bod5', 'lake', '4.001', 4),
    ('bod5', 'river', '5.999', 4),
    ('bod5', 'lake', '5.999', 4),
    ('bod5', 'river', '6', 4),
    ('bod5', 'lake', '6', 4),
    ('bod5', 'river', '6.001', 5),
    ('bod5', 'lake', '6.001', 5),
    ('bod5', 'river', '9.999', 5),
    ('bod5', 'lake', '9.999', 5),
    ('bod5', 'river', '10', 5),
    ('bod5', 'lake', '10', 5),
    ('bod5', 'river', '10.001', 6),
    ('bod5', 'lake', '10.001', 6),
    ('nh3n', 'river', '0.149', 1),
    ('nh3n', 'lake', '0.149', 1),
    ('nh3n', 'river', '0.15', 1),
    ('nh3n', 'lake', '0.15', 1),
    ('nh3n', 'river', '0.151', 2),
    ('nh3n', 'lake', '0.151', 2),
    ('nh3n', 'river', '0.499', 2),
    ('nh3n', 'lake', '0.499', 2),
    ('nh3n', 'river', '0.5', 2),
    ('nh3n', 'lake', '0.5', 2),
    ('nh3n', 'river', '0.501', 3),
    ('nh3n', 'lake', '0.501', 3),
    ('nh3n', 'river', '0.999', 3),
    ('nh3n', 'lake', '0.999', 3),
    ('nh3n', 'river', '1.0', 3),
    ('nh3n', 'lake', '1.0', 3),
    ('nh3n', 'river', '1.001', 4),
    ('nh3n', 'lake', '1.001', 4),
    ('nh3n', 'river', '1.499', 4),
    ('nh3n', 'lake', '1.499', 4),
    ('nh3n', 'river', '1.5', 4),
    ('nh3n', 'lake', '1.5', 4),
    ('nh3n', 'river', '1.501', 5),
    ('nh3n', 'lake', '1.501', 5),
    ('nh3n', 'river', '1.999', 5),
    ('nh3n', 'lake', '1.999', 5),
    ('nh3n', 'river', '2.0', 5),
    ('nh3n', 'lake', '2.0', 5),
    ('nh3n', 'river', '2.001', 6),
    ('nh3n', 'lake', '2.001', 6),
    ('tp', 'river', '0.019', 1),
    ('tp', 'river', '0.02', 1),
    ('tp', 'river', '0.021', 2),
    ('tp', 'river', '0.099', 2),
    ('tp', 'river', '0.1', 2),
    ('tp', 'river', '0.101', 3),
    ('tp', 'river', '0.199', 3),
    ('tp', 'river', '0.2', 3),
    ('tp', 'river', '0.201', 4),
    ('tp', 'river', '0.299', 4),
    ('tp', 'river', '0.3', 4),
    ('tp', 'river', '0.301', 5),
    ('tp', 'river', '0.399', 5),
    ('tp', 'river', '0.4', 5),
    ('tp', 'river', '0.401', 6),
    ('tp', 'lake', '0.009', 1),
    ('tp', 'lake', '0.01', 1),
    ('tp', 'lake', '0.011', 2),
    ('tp', 'lake', '0.024', 2),
    ('tp', 'lake', '0.025', 2),
    ('tp', 'lake', '0.026', 3),
    ('tp', 'lake', '0.049', 3),
    ('tp', 'lake', '0.05', 3),
    ('tp', 'lake', '0.051', 4),
    ('tp', 'lake', '0.099', 4),
    ('tp', 'lake', '0.1', 4),
    ('tp', 'lake', '0.101', 5),
    ('tp', 'lake', '0.199', 5),
    ('tp', 'lake', '0.2', 5),
    ('tp', 'lake', '0.201', 6),
    ('tn', 'lake', '0.199', 1),
    ('tn', 'lake', '0.2', 1),
    ('tn', 'lake', '0.201', 2),
    ('tn', 'lake', '0.499', 2),
    ('tn', 'lake', '0.5', 2),
    ('tn', 'lake', '0.501', 3),
    ('tn', 'lake', '0.999', 3),
    ('tn', 'lake', '1.0', 3),
    ('tn', 'lake', '1.001', 4),
    ('tn', 'lake', '1.499', 4),
    ('tn', 'lake', '1.5', 4),
    ('tn', 'lake', '1.501', 5),
    ('tn', 'lake', '1.999', 5),
    ('tn', 'lake', '2.0', 5),
    ('tn', 'lake', '2.001', 6),
]


@pytest.mark.parametrize(("parameter", "waterbody", "value", "expected"), WATER_VECTORS)
def test_class_limits(parameter: str, waterbody: str, value: str, expected: int) -> None:
    r = parameter_class(STD, parameter, value, waterbody)  # type: ignore[arg-type]
    assert r.applicable and r.klass is not None
    assert r.klass.number == expected
    assert parameter_class(STD, parameter, float(value), waterbody).klass == r.klass  # type: ignore[arg-type]


@pytest.mark.parametrize(("value", "expected"), [("5.999", 6), ("6", 1), ("7.2", 1), ("9", 1), ("9.001", 6), ("0", 6)])
def test_ph_range_for_all_classes(value: str, expected: int) -> None:
    for body in ("river", "lake"):
        r = parameter_class(STD, "ph", value, body)  # type: ignore[arg-type]
        assert r.klass is not None and r.klass.number == expected


def test_site_class_is_the_worst_parameter_naming_all_at_it() -> None:
    r = water_class({"nh3n": 1.2, "do": 4.5, "tp": 0.25}, "river")
    assert (r.klass.number, r.klass.label, r.klass.local_label) == (4, "IV", "Ⅳ类")
    assert r.determining == ("nh3n", "do", "tp")
    r = water_class({"nh3n": 0.1, "do": 8, "codmn": 6.5, "ph": 7}, "river")
    assert (r.klass.number, r.determining) == (4, ("codmn",))  # CODMn 6.5 > 6 (III) and <= 10 (IV)
    assert (r.standard_id, r.edition, r.waterbody) == ("GB 3838-2002", "2002", "river")


def test_worse_than_v() -> None:
    r = water_class({"nh3n": "2.001", "do": 8}, "river")
    assert (r.klass.number, r.klass.label, r.klass.local_label, r.determining) == (6, "worse than V", "劣Ⅴ类", ("nh3n",))
    r = water_class({"do": "1.999"}, "lake")
    assert r.klass.number == 6


def test_lake_tp_and_tn() -> None:
    assert water_class({"tp": 0.05}, "river").klass.number == 2
    assert water_class({"tp": 0.05}, "lake").klass.number == 3
    r = water_class({"tp": 0.02, "tn": 1.2}, "lake")
    assert (r.klass.number, r.determining) == (4, ("tn",))
    r = water_class({"tp": 0.02, "tn": 5}, "river")  # TN is not evaluated for rivers
    tn = next(p for p in r.parameters if p.parameter == "tn")
    assert (tn.applicable, tn.klass, r.klass.number, r.determining) == (False, None, 1, ("tp",))
    with pytest.raises(ValueError, match="none of tn is evaluated for a river"):
        water_class({"tn": 1}, "river")


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="unknown parameter 'cu'"):
        water_class({"cu": 1}, "river")
    with pytest.raises(ValueError, match="must not be negative"):
        water_class({"nh3n": -0.1}, "river")
    with pytest.raises(ValueError, match="waterbody"):
        water_class({"nh3n": 0.1}, "sea")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no parameter values"):
        water_class({}, "river")
    with pytest.raises(StandardLookupError):
        water_class({"nh3n": 0.1}, "river", on=date(2001, 1, 1))


def test_result_dict() -> None:
    d = water_class({"nh3n": 0.5, "do": 6}, "river").to_dict()
    assert (d["class"], d["label"], d["determining_parameters"]) == (2, "II", ["nh3n", "do"])
    assert d["parameters"][0] == {"parameter": "nh3n", "value": 0.5, "unit": "mg/L", "applicable": True, "class": 2,
                                  "label": "II", "limit": "<= 0.5", "clause": "Table 1 item 7 (NH3-N <=)",
                                  "verified": True}


def test_cli() -> None:
    runner = CliRunner()
    out = runner.invoke(water_class_command, ["--waterbody", "river", "nh3n=1.2", "do=4.5", "tp=0.25"])
    assert out.exit_code == 0, out.output
    assert "Class IV (Ⅳ类), determined by: nh3n, do, tp" in out.output
    out = runner.invoke(water_class_command, ["--json", "--waterbody", "lake", "tp=0.25"])
    assert json.loads(out.output)["label"] == "worse than V"
    for args, message in ((["cu=1"], "unknown parameter"), (["nh3n=-1"], "must not be negative"),
                          (["--date", "2026-02-30", "nh3n=1"], "is not a date"), (["nh3n"], "is not PARAM=VALUE")):
        out = runner.invoke(water_class_command, args)
        lines = out.output.strip().splitlines()
        assert out.exit_code != 0 and len(lines) == 1 and message in lines[0], out.output


ORIGINAL = (DATA_DIR / "gb3838-2002.yaml").read_text()


@pytest.mark.parametrize(("old", "new", "key", "reason"), [
    ("    limits: [2, 4, 6, 10, 15]\n", "    limits: [2, 4, 16, 10, 15]\n", "parameters.codmn.limits", "non-decreasing"),
    ("    limits: [7.5, 6, 5, 3, 2]\n", "    limits: [7.5, 6, 5, 3, 4]\n", "parameters.do.limits", "non-increasing"),
    ("    limits: [2, 4, 6, 10, 15]\n", "    limits: [2, 4, 6, 10]\n", "parameters.codmn.limits", "one limit per class"),
    ("      lake: [0.01, 0.025, 0.05, 0.1, 0.2]\n", "      sea: [0.01, 0.025, 0.05, 0.1, 0.2]\n",
     "parameters.tp.limits_by_waterbody.sea", "waterbody"),
    ("    direction: range\n", "    direction: between\n", "parameters.ph.direction", "'max', 'min' or 'range'"),
    ("    range: [6, 9]\n", "    range: [9, 6]\n", "parameters.ph.range", "low must be below high"),
    ("    applies_to: [lake]\n", "    applies_to: [pond]\n", "parameters.tn.applies_to", "non-empty list"),
    ("worse_than_last: {class: 6,", "worse_than_last: {class: 7,", "worse_than_last.class", "must be 6"),
])
def test_bad_water_table_rejected(tmp_path: Path, old: str, new: str, key: str, reason: str) -> None:
    assert old in ORIGINAL
    path = tmp_path / "bad.yaml"
    path.write_text(ORIGINAL.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_water_standard(path)
    assert (info.value.key, info.value.file) == (key, str(path))
    assert reason in info.value.reason
