"""The HTML report renderer: escaped text, inline images only, formats and best-value highlighting."""

import re

import pandas as pd

from churn_pipeline.models.report import Figure, Section, Table, curve_figure, render_page


def test_every_text_is_escaped():
    section = Section(
        "<script>alert(1)</script>",
        paragraphs=["a < b & c"],
        tables=[Table(pd.DataFrame({"name": ["<b>x</b>"], "value": [1.0]}))],
        cards=[("label <i>", "1 > 0")],
    )
    page = render_page("T & <T>", "sub", [section])
    assert "<script>" not in page and "<b>x</b>" not in page and "<i>" not in page
    assert "&lt;script&gt;" in page and "a &lt; b &amp; c" in page and "1 &gt; 0" in page


def test_images_are_inline_data_uris_and_nothing_is_fetched():
    png = curve_figure({"model": pd.DataFrame({"x": [0, 1], "y": [0, 1]})}, "x", "y", "t", "x", "y")
    assert png.startswith(b"\x89PNG")
    page = render_page("t", "s", [Section("figs", figures=[Figure(png, "a curve")])])
    assert page.count('src="data:image/png;base64,') == 1
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page)


def test_numbers_follow_column_and_row_formats_and_integers_stay_integers():
    frame = pd.DataFrame({"metric": ["auc", "share"], "model": [0.79312, 0.25], "rows": [1006, 20000]})
    table = Table(frame, row_formats={"share": ".0%"}, compare=["model"])
    page = render_page("t", "s", [Section("x", tables=[table])])
    assert ">0.793<" in page and ">25%<" in page
    assert ">1,006<" in page and ">20,000<" in page and "1,006.000" not in page


def test_the_best_value_of_a_row_is_highlighted_by_its_direction():
    frame = pd.DataFrame({"metric": ["auc", "brier", "bias"], "a": [0.8, 0.20, -5.0], "b": [0.7, 0.18, 2.0]})
    table = Table(frame, highlight={"auc": "higher", "brier": "lower", "bias": "zero"}, compare=["a", "b"])
    page = render_page("t", "s", [Section("x", tables=[table])])
    best = re.findall(r'<td class="best">([^<]*)</td>', page)
    assert best == ["0.800", "0.180", "2.000"]
