"""Tests of gradsketch.lm.report (mean/SE, SVG geometry, provenance) and the experiments' CLI helper.

Expected values come from numpy float64 or are computed by hand; SVG is parsed with ElementTree.
"""

from __future__ import annotations

import math
import stat
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from gradsketch.lm.experiments import ALL, cli_json, load
from gradsketch.lm.report import BAR_GEOMETRY, Report, format_mean_se, mean_se

SVG = "{http://www.w3.org/2000/svg}"


def test_mean_se_matches_numpy_sample_sd() -> None:
    values = [3.31, 3.27, 3.40, 3.18]
    mean, se = mean_se(values)
    oracle = np.asarray(values, dtype=np.float64)
    assert mean == pytest.approx(oracle.mean(), abs=1e-15)
    assert se == pytest.approx(oracle.std(ddof=1) / math.sqrt(4), rel=1e-14)


def test_mean_se_hand_values() -> None:
    # 1, 2, 3: mean 2, sample variance ((1)^2 + 0 + 1^2) / 2 = 1, SE = 1/sqrt(3).
    mean, se = mean_se([1.0, 2.0, 3.0])
    assert mean == 2.0
    assert se == pytest.approx(1 / math.sqrt(3), rel=1e-15)
    # The population SD (n, not n - 1) would give sqrt(2/3)/sqrt(3) = 0.4714: must not match.
    assert abs(se - math.sqrt(2 / 3) / math.sqrt(3)) > 0.1


def test_mean_se_small_samples() -> None:
    mean, se = mean_se([2.5])
    assert mean == 2.5 and math.isnan(se)
    mean, se = mean_se([])
    assert math.isnan(mean) and math.isnan(se)
    with pytest.raises(ValueError, match="flat sequence"):
        mean_se([[1.0, 2.0]])


def test_format_mean_se() -> None:
    assert format_mean_se(3.3104, 0.0396) == "3.310 ± 0.040"
    assert format_mean_se(0.5, 0.125, digits=2) == "0.50 ± 0.12"  # round-half-even in format
    assert format_mean_se(2.0, math.nan) == "2.000"
    assert format_mean_se(math.nan, math.nan) == "n/a"


def _svgs(html: str) -> list[ET.Element]:
    """Every top-level <svg> of a fragment, parsed."""
    roots, start = [], 0
    while (begin := html.find("<svg", start)) >= 0:
        end = html.index("</svg>", begin) + len("</svg>")
        roots.append(ET.fromstring(html[begin:end]))
        start = end
    return roots


def test_bars_whiskers_at_mean_plus_minus_se() -> None:
    report = Report()
    items = [("random", 4.0, 0.5), ("select", 2.0, 0.25), ("single seed", 3.0, None), ("top-k", 1.0, math.nan)]
    report.bars("held-out perplexity", items, reference=("expert", 1.5))
    (svg,) = _svgs(report.fragment())
    g = BAR_GEOMETRY
    # Axis from 0 to the largest mean + se = 4.5 over the plot width.
    plot_width = g["width"] - g["label_width"] - g["value_width"]
    scale = plot_width / 4.5
    x0 = g["label_width"]
    whiskers = svg.findall(f"{SVG}g[@class='whisker']")
    assert len(whiskers) == 2  # only items with a finite SE have one
    rects = svg.findall(f"{SVG}rect[@class='bar']")
    assert len(rects) == 4
    for row, (whisker, (label, mean, se)) in enumerate(zip(whiskers, items[:2])):
        line = whisker.find(f"{SVG}line")
        centre = g["top"] + row * g["row_height"] + g["row_height"] / 2
        assert float(line.get("x1")) == pytest.approx(x0 + (mean - se) * scale, abs=0.01)
        assert float(line.get("x2")) == pytest.approx(x0 + (mean + se) * scale, abs=0.01)
        assert float(line.get("y1")) == pytest.approx(centre, abs=0.01)
        assert float(line.get("y2")) == pytest.approx(centre, abs=0.01)
        rect = rects[row]
        assert float(rect.get("x")) == pytest.approx(x0, abs=0.01)
        assert float(rect.get("width")) == pytest.approx(mean * scale, abs=0.01)
        # the bar is centred on the whisker
        assert float(rect.get("y")) + float(rect.get("height")) / 2 == pytest.approx(centre, abs=0.01)
    (reference,) = svg.findall(f"{SVG}line[@class='reference']")
    assert float(reference.get("x1")) == pytest.approx(x0 + 1.5 * scale, abs=0.01)
    texts = "".join(text.text or "" for text in svg.iter(f"{SVG}text"))
    assert "4.000 ± 0.500" in texts and "expert: 1.500" in texts


def test_bars_negative_values_draw_left_of_zero() -> None:
    report = Report()
    report.bars("values", [("harmful", -2.0, 1.0), ("helpful", 2.0, None)], fmt="{:.1f}")
    (svg,) = _svgs(report.fragment())
    g = BAR_GEOMETRY
    plot_width = g["width"] - g["label_width"] - g["value_width"]
    # axis -3 .. 2 (mean - se of the first item is -3)
    scale = plot_width / 5.0
    zero = g["label_width"] + 3 * scale
    first, second = svg.findall(f"{SVG}rect[@class='bar']")
    assert float(first.get("x")) == pytest.approx(zero - 2 * scale, abs=0.01)
    assert float(first.get("width")) == pytest.approx(2 * scale, abs=0.01)
    assert float(second.get("x")) == pytest.approx(zero, abs=0.01)
    line = svg.find(f"{SVG}g[@class='whisker']/{SVG}line")
    assert float(line.get("x1")) == pytest.approx(g["label_width"], abs=0.01)
    assert float(line.get("x2")) == pytest.approx(zero - 1 * scale, abs=0.01)


def test_scatter_points_diagonal_and_error_bars() -> None:
    report = Report()
    points = [(1.0, 1.0), (2.0, 3.0), (3.0, 2.0)]
    report.scatter("estimated vs actual", points, xlabel="estimated", ylabel="actual",
                   errors=[(0.1, 0.2), (math.nan, 0.3), (0.0, math.nan)])
    (svg,) = _svgs(report.fragment())
    circles = svg.findall(f"{SVG}circle[@class='point']")
    assert len(circles) == 3
    (diagonal,) = svg.findall(f"{SVG}line[@class='diagonal']")
    # The diagonal passes through every point with x == y: the first point lies on it.
    x1, y1, x2, y2 = (float(diagonal.get(a)) for a in ("x1", "y1", "x2", "y2"))
    cx, cy = float(circles[0].get("cx")), float(circles[0].get("cy"))
    assert (cy - y1) * (x2 - x1) == pytest.approx((cx - x1) * (y2 - y1), abs=1.0)
    # Points above the diagonal in data (y > x) are above it on screen (smaller SVG y).
    cx1, cy1 = float(circles[1].get("cx")), float(circles[1].get("cy"))
    assert cy1 < y1 + (cx1 - x1) * (y2 - y1) / (x2 - x1)
    assert len(svg.findall(f"{SVG}line[@class='yerr']")) == 2
    assert len(svg.findall(f"{SVG}line[@class='xerr']")) == 2  # 0.0 is a finite (zero-length) error
    # the y error bar of point 2 spans 2 * 0.3 in data units around its centre
    yerr = svg.findall(f"{SVG}line[@class='yerr']")[1]
    assert float(yerr.get("x1")) == pytest.approx(cx1, abs=0.01)
    assert (float(yerr.get("y1")) + float(yerr.get("y2"))) / 2 == pytest.approx(cy1, abs=0.02)


def test_html_has_every_provenance_field_and_escapes() -> None:
    report = Report()
    report.heading("SELECT <1>")
    report.paragraph("a & b")
    report.table(["method", "perplexity"], [["random", "3.3 ± 0.1"]])
    provenance = {
        "gradsketch_version": "0.1.0", "engine_version": "1.2", "commit": "abc123",
        "command_line": "python -m gradsketch reproduce --suite lm", "started_utc": "2026-12-01T19:00:00Z",
        "run_time_s": {"total": 12.5, "select": 3.25}, "size": "small", "torch": "2.5.1", "threads": 1, "cores": 2,
    }
    page = report.html("GradSketch LM suite", provenance)
    assert page.startswith("<!doctype html>")
    for key, value in provenance.items():
        assert f"<th>{key}</th>" in page
    for text in ("0.1.0", "abc123", "python -m gradsketch reproduce --suite lm", "2026-12-01T19:00:00Z",
                 "total: 12.5", "select: 3.25", "2.5.1"):
        assert text in page
    assert "SELECT &lt;1&gt;" in page and "a &amp; b" in page
    assert "<html" not in report.fragment() and "SELECT &lt;1&gt;" in report.fragment()
    with pytest.raises(ValueError, match="row 0 has 1 cells"):
        report.table(["a", "b"], [["x"]])


def test_registry() -> None:
    assert ALL == ("select", "less", "inrun", "density", "paser", "gradex")
    with pytest.raises(ValueError, match="unknown LM experiment 'nope'"):
        load("nope")


def _fake_cli(tmp_path: Path, script: str) -> str:
    path = tmp_path / "gradsketch"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_cli_json_parses_output_and_adds_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRADSKETCH_CLI", _fake_cli(tmp_path, 'printf \'{"args": "%s"}\' "$*"\n'))
    assert cli_json(["select", "S", "--set", "pool"]) == {"args": "select S --set pool --json"}
    assert cli_json(["info", "S", "--json"]) == {"args": "info S --json"}


def test_cli_json_reports_the_cli_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRADSKETCH_CLI", _fake_cli(
        tmp_path, 'echo \'{"error": {"code": "not_found", "message": "no set pool", "path": "/s"}}\'\n'
                  'echo "Error: no set pool" >&2\nexit 1\n'))
    with pytest.raises(RuntimeError, match=r"exit status 1: not_found: no set pool \(/s\)"):
        cli_json(["select", "/s", "--set", "pool"])
    monkeypatch.setenv("GRADSKETCH_CLI", _fake_cli(tmp_path, 'echo "boom" >&2\nexit 3\n'))
    with pytest.raises(RuntimeError, match="exit status 3: boom"):
        cli_json(["info", "/s"])
    monkeypatch.setenv("GRADSKETCH_CLI", _fake_cli(tmp_path, 'echo "not json"\n'))
    with pytest.raises(RuntimeError, match="did not print JSON"):
        cli_json(["info", "/s"])


def test_cli_json_missing_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRADSKETCH_CLI", str(tmp_path / "absent"))
    with pytest.raises(RuntimeError, match="is not an executable file"):
        cli_json(["info", "/s"])
    monkeypatch.delenv("GRADSKETCH_CLI")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match="gradsketch command was not found"):
        cli_json(["info", "/s"])


def test_cli_json_real_cli_error(gradsketch_cli: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRADSKETCH_CLI", gradsketch_cli)
    with pytest.raises(RuntimeError, match="not_a_store"):
        cli_json(["info", str(tmp_path / "nothing")])
