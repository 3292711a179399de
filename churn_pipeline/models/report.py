"""The evaluation report: one self-contained HTML page (inline CSS, plots as PNG data URIs, no external URL).

``build_report`` turns the evaluate stage's results into the page and returns it as a string (the stage writes
it); ``render_page`` is the generic part (sections of paragraphs, tables and figures, every text escaped);
the ``*_figure`` functions draw one matplotlib chart each and return PNG bytes. Nothing here reads or writes
files.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from churn_pipeline.models.lifetime import LifetimeValueParams, discounted_lifetime_value, lifetime_assumptions

__all__ = [
    "CHURN_MEANINGS",
    "CLV_MEANINGS",
    "PROFIT_MEANINGS",
    "Figure",
    "Section",
    "Table",
    "build_report",
    "campaign_figure",
    "campaign_section",
    "evaluation_figures",
    "render_page",
]

MEANING = "what it means"
RANKING_LABELS = {
    "model": "LightGBM model",
    "model_by_value": "model, ranked by expected profit",
    "recency_rule": "recency rule",
    "rfm": "RFM score",
    "bgnbd": "BG/NBD + Gamma-Gamma",
    "random": "random contact",
}

CHURN_MEANINGS = {
    "roc_auc": ("higher", "Chance that a random churner is ranked above a random stayer (0.5 = random, 1 = perfect)."),
    "pr_auc": ("higher", "Average precision over every contact-list length; a random ranking scores the churn rate."),
    "brier": ("lower", "Mean squared error of the churn probability; predicting the churn rate for all scores r(1-r)."),
    "log_loss": ("lower", "Mean negative log-likelihood of the outcomes: punishes confident mistakes hardest."),
    "ece": (
        "lower",
        "Average gap between predicted probability and observed churn rate over 10 bins (0 = calibrated).",
    ),
}
CLV_MEANINGS = {
    "mae": ("lower", "Average absolute error per customer, in the shop's currency."),
    "rmse": ("lower", "Like MAE, but large misses weigh more (currency)."),
    "normalized_gini": (
        "higher",
        "How well the prediction orders customers by actual revenue (1 = perfect, 0 = random).",
    ),
    "spearman": ("higher", "Rank correlation of predicted and actual revenue."),
    "decile_mape": ("lower", "Average relative gap between mean predicted and mean actual revenue over 10 deciles."),
    "top10_capture": ("higher", "Share of all future revenue earned by the top 10 % predicted customers."),
    "total_predicted": (None, "Predicted revenue of these customers over the CLV horizon (currency)."),
    "total_actual": (None, "Their actual revenue over the CLV horizon (currency)."),
    "total_bias_pct": ("zero", "Predicted total over actual total, minus 1, in % (positive = over-forecast)."),
}
PROFIT_MEANINGS = {
    "best_share": (None, "Share of customers to contact for the largest profit (ranked by this ranking)."),
    "max_profit": ("higher", "Campaign profit at that share, with the observed churn outcomes (currency)."),
    "max_profit_per_customer": ("higher", "The same profit divided by all customers at the cutoff."),
    "emp_per_customer": ("higher", "Expected maximum profit per customer (EMP) with an uncertain acceptance rate."),
    "emp_share": (None, "Expected profit-maximising share of customers contacted under that uncertainty."),
}

STYLE = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0;background:#f5f6f8;color:#1d2330}
main{max-width:1180px;margin:0 auto;padding:24px 28px 60px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:20px;margin:36px 0 8px;border-bottom:2px solid #d8dce3;padding-bottom:4px}
p{line-height:1.45;margin:6px 0 10px;max-width:980px}.sub{color:#5a6475;margin:0 0 18px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(210px,1fr));gap:12px;margin:14px 0}
.card{background:#fff;border:1px solid #d8dce3;border-radius:8px;padding:12px 14px}
.card .v{font-size:22px;font-weight:600}.card .l{font-size:13px;color:#5a6475;margin-top:2px}
table{border-collapse:collapse;background:#fff;margin:8px 0 6px;font-size:13.5px}
th,td{border:1px solid #d8dce3;padding:5px 9px;text-align:right;vertical-align:top;white-space:nowrap}
th{background:#eef0f4;font-weight:600;white-space:normal;min-width:48px}td.t,th.t{text-align:left}td.m,th.m{text-align:left;color:#5a6475;white-space:normal;min-width:300px;max-width:440px}
td.best{font-weight:700;background:#e7f4ea}caption{caption-side:top;text-align:left;font-weight:600;padding:4px 0}
.figs{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:14px;margin:10px 0}
figure{margin:0;background:#fff;border:1px solid #d8dce3;border-radius:8px;padding:8px}
figure img{width:100%;height:auto;display:block}figcaption{font-size:13px;color:#5a6475;padding:4px 2px 0}
.scroll{overflow-x:auto}
"""


@dataclass(frozen=True)
class Table:
    """A table whose first column labels the rows. Cells are numbers or text; ``formats`` maps a column to a
    format spec (default ``,.3f`` for floats, ``,d`` for integers); for the ``compare`` columns,
    ``row_formats`` maps a row label to a spec instead, and ``highlight`` maps a row label to the direction
    of "best" (``"higher"``, ``"lower"``, ``"zero"`` or None), whose best cell is highlighted."""

    frame: pd.DataFrame
    caption: str = ""
    formats: Mapping[str, str] = field(default_factory=dict)
    row_formats: Mapping[str, str] = field(default_factory=dict)
    highlight: Mapping[str, str | None] = field(default_factory=dict)
    compare: Sequence[str] = ()


@dataclass(frozen=True)
class Figure:
    png: bytes
    caption: str


@dataclass(frozen=True)
class Section:
    title: str
    paragraphs: Sequence[str] = ()
    tables: Sequence[Table] = ()
    figures: Sequence[Figure] = ()
    cards: Sequence[tuple[str, str]] = ()


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _fmt(value: Any, spec: str | None) -> str:
    if value is None or (isinstance(value, float | np.floating) and not np.isfinite(value)):
        return "–"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return format(int(value), spec or ",d")
    if isinstance(value, float | np.floating):
        return format(float(value), spec or ",.3f")
    return str(value)


def _best_columns(values: Mapping[str, Any], direction: str | None, compare: Sequence[str]) -> set[str]:
    """The ``compare`` columns holding the best number of a row: max, min, or closest to zero."""
    numbers = {
        c: float(values[c])
        for c in compare
        if isinstance(values.get(c), int | float | np.number) and np.isfinite(values[c])
    }
    if not direction or len(numbers) < 2:
        return set()
    if direction == "higher":
        target = max(numbers.values())
    elif direction == "lower":
        target = min(numbers.values())
    else:
        target = min(numbers.values(), key=abs)
    return {c for c, v in numbers.items() if v == target}


def _table_html(table: Table) -> str:
    frame = table.frame
    # Column-wise Python values keep each column's type (a row-wise view would turn ints into floats).
    columns = {c: frame[c].tolist() for c in frame.columns}
    text_columns = {c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])}

    def cls(c: str) -> str:
        return "m" if c == MEANING else ("t" if c in text_columns else "")

    # Header names wrap at their underscores, so wide tables fit the page.
    head = "".join(f'<th class="{cls(c)}">{_e(str(c).replace("_", " "))}</th>' for c in frame.columns)
    rows = []
    for i in range(len(frame)):  # a rendered table has a few dozen rows, never one per customer
        values = {c: columns[c][i] for c in frame.columns}
        label = str(values[frame.columns[0]])
        best = _best_columns(values, table.highlight.get(label), table.compare)
        cells = []
        for c in frame.columns:
            spec = table.row_formats.get(label) if c in table.compare else None
            text = _e(_fmt(values[c], spec or table.formats.get(c)))
            cells.append(f'<td class="{"best" if c in best else cls(c)}">{text}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    caption = f"<caption>{_e(table.caption)}</caption>" if table.caption else ""
    body = "".join(rows)
    return f'<div class="scroll"><table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def render_page(title: str, subtitle: str, sections: Sequence[Section]) -> str:
    """The whole page as one HTML string: every text escaped, every image inline, no external reference."""
    body = [f"<h1>{_e(title)}</h1>", f'<p class="sub">{_e(subtitle)}</p>']
    for section in sections:
        body.append(f"<section><h2>{_e(section.title)}</h2>")
        if section.cards:
            cards = "".join(
                f'<div class="card"><div class="v">{_e(v)}</div><div class="l">{_e(label)}</div></div>'
                for label, v in section.cards
            )
            body.append(f'<div class="cards">{cards}</div>')
        body.extend(f"<p>{_e(p)}</p>" for p in section.paragraphs)
        body.extend(_table_html(t) for t in section.tables)
        if section.figures:
            figs = "".join(
                f'<figure><img alt="{_e(f.caption)}" src="data:image/png;base64,'
                f'{base64.b64encode(f.png).decode("ascii")}"><figcaption>{_e(f.caption)}</figcaption></figure>'
                for f in section.figures
            )
            body.append(f'<div class="figs">{figs}</div>')
        body.append("</section>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{STYLE}</style></head>"
        f"<body><main>{''.join(body)}</main></body></html>\n"
    )


# -------------------------------------------------------------------------------------------- figures
def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _axes(title: str, xlabel: str, ylabel: str, size: tuple[float, float] = (6.2, 4.3)):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    return fig, ax


STYLES = {
    "model": {"color": "#1f5fbf", "lw": 2.2},
    "model_by_value": {"color": "#1f5fbf", "lw": 1.6, "ls": "--"},
    "recency_rule": {"color": "#d9822b", "lw": 1.4},
    "rfm": {"color": "#2e9e5b", "lw": 1.4},
    "bgnbd": {"color": "#8e44ad", "lw": 1.4},
    "random": {"color": "#888888", "lw": 1.0, "ls": ":"},
}


def curve_figure(
    curves: Mapping[str, pd.DataFrame],
    x: str,
    y: str,
    title: str,
    xlabel: str,
    ylabel: str,
    diagonal: bool = False,
    markers: bool = False,
) -> bytes:
    """One line per ranking (``curves``: ranking -> frame with columns ``x`` and ``y``)."""
    fig, ax = _axes(title, xlabel, ylabel)
    if diagonal:
        ax.plot([0, 1], [0, 1], color="#888888", ls=":", lw=1.0, label="random / perfectly calibrated")
    for name, frame in curves.items():
        ax.plot(
            frame[x],
            frame[y],
            marker="o" if markers else None,
            ms=3.5,
            label=RANKING_LABELS.get(name, name),
            **STYLES.get(name, {}),
        )
    ax.legend(fontsize=8.5)
    return _png(fig)


def wide_figure(frame: pd.DataFrame, x: str, title: str, xlabel: str, ylabel: str, percent_x: bool = True) -> bytes:
    """One line per non-``x`` column of a wide frame (e.g. the profit curve and the gains chart)."""
    fig, ax = _axes(title, xlabel, ylabel)
    for name in frame.columns.drop(x):
        ax.plot(frame[x], frame[name], label=RANKING_LABELS.get(name, name), **STYLES.get(name, {}))
    if percent_x:
        ax.xaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
    else:
        ax.set_xticks(frame[x].to_numpy())
    ax.legend(fontsize=8.5, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, frameon=False)
    return _png(fig)


def clv_decile_figure(deciles: pd.DataFrame, title: str) -> bytes:
    """Mean predicted and mean actual revenue side by side per decile of predicted CLV."""
    fig, ax = _axes(title, "decile of predicted CLV (1 = highest)", "mean revenue over the CLV horizon")
    x = deciles["decile"].to_numpy()
    ax.bar(x - 0.2, deciles["mean_predicted"], width=0.4, label="mean predicted", color="#1f5fbf")
    ax.bar(x + 0.2, deciles["mean_actual"], width=0.4, label="mean actual", color="#d9822b")
    ax.set_xticks(x)
    ax.legend(fontsize=8.5)
    return _png(fig)


def importance_figure(importance: pd.DataFrame, title: str, top: int = 20) -> bytes:
    """Horizontal bars of the ``top`` features by gain."""
    imp = importance.sort_values("gain", ascending=False).head(top)[::-1]
    fig, ax = _axes(title, "total gain", "", size=(6.2, 5.6))
    ax.barh(imp["feature"], imp["gain"], color="#1f5fbf")
    ax.tick_params(axis="y", labelsize=8)
    return _png(fig)


# ----------------------------------------------------------------------------------------- the report
def _label(name: str) -> str:
    return RANKING_LABELS.get(name, name)


def _metric_table(
    per_ranking: Mapping[str, Mapping[str, float]],
    meanings: Mapping[str, tuple[str | None, str]],
    caption: str,
    row_formats: Mapping[str, str] | None = None,
) -> Table:
    names = list(per_ranking)
    rows = []
    for metric, (_, meaning) in meanings.items():
        if not any(metric in per_ranking[n] for n in names):
            continue
        rows.append(
            {
                "metric": metric,
                **{_label(n): per_ranking[n].get(metric, np.nan) for n in names},
                MEANING: meaning,
            }
        )
    frame = pd.DataFrame(rows)
    return Table(
        frame,
        caption,
        row_formats=row_formats or {},
        highlight={m: d for m, (d, _) in meanings.items()},
        compare=[_label(n) for n in names],
    )


def _money(value: float) -> str:
    return f"{value:,.0f}"


def evaluation_figures(details: Mapping[str, Any], backtest: pd.DataFrame, calibration_bins: int) -> dict[str, Figure]:
    """The evaluation's charts at the test cutoff and over the backtest folds, by plot name (the names of the
    PNG files under ``plots/images/`` that ``dvc plots show`` renders without a network, and the report's
    figures). ``details``: the test fold's details (pipelines.evaluate.Fold.details); ``backtest``: one row per
    fold and ranking with ``fold``, ``ranking`` and ``roc_auc``."""
    wide_auc = backtest.pivot_table(index="fold", columns="ranking", values="roc_auc")
    wide_auc = wide_auc[[n for n in backtest["ranking"].unique() if n != "model_by_value"]].reset_index()
    return {
        "roc": Figure(
            curve_figure(
                details["roc"], "fpr", "tpr", "ROC", "false positive rate", "true positive rate", diagonal=True
            ),
            "ROC: churners found (y) against stayers wrongly flagged (x).",
        ),
        "precision_recall": Figure(
            curve_figure(
                details["pr"],
                "recall",
                "precision",
                "Precision-recall",
                "recall (churners found)",
                "precision (share of flagged who churn)",
            ),
            "Precision-recall: how pure the contact list stays as it grows.",
        ),
        "calibration": Figure(
            curve_figure(
                details["reliability"],
                "mean_predicted",
                "observed_rate",
                "Reliability",
                "mean predicted churn probability",
                "observed churn rate",
                diagonal=True,
                markers=True,
            ),
            f"Reliability: {calibration_bins} probability bins; on the diagonal = calibrated.",
        ),
        "gains": Figure(
            wide_figure(
                details["gains"],
                "share",
                "Cumulative gains",
                "share of customers contacted (by risk)",
                "share of all churners reached",
            ),
            "Gains: churners reached when contacting the riskiest share first.",
        ),
        "profit_curve": Figure(
            wide_figure(
                details["profit_curve"],
                "share",
                "Campaign profit",
                "share of customers contacted",
                "profit (shop currency)",
            ),
            "Expected profit against campaign size; the peak is the profit-maximising share.",
        ),
        "clv_deciles": Figure(
            clv_decile_figure(details["clv_deciles"]["model"], "CLV by decile of prediction"),
            "Mean predicted against mean actual revenue per decile of predicted CLV.",
        ),
        "backtest_roc_auc": Figure(
            wide_figure(
                wide_auc,
                "fold",
                "Backtest ROC AUC by fold",
                "fold (1 = test cutoff, 2 = the cutoff before, ...)",
                "ROC AUC",
                percent_x=False,
            ),
            "Churn ROC AUC of the model and the baselines at each backtest cutoff.",
        ),
    }


def timing_figure(curve: pd.DataFrame, title: str) -> bytes:
    """Observed share of customers with an order within t days against each ranking's mean predicted
    probability, at every edge of the next-order grid."""
    fig, ax = _axes(title, "days after the cutoff", "share of customers with an order by then")
    ax.plot(curve["days"], curve["observed"], color="#222222", lw=2.4, marker="o", ms=4, label="observed")
    for name in (n for n in RANKS if n in curve.columns):
        ax.plot(curve["days"], curve[name], marker="o", ms=3.5, label=RANKING_LABELS.get(name, name), **STYLES[name])
    ax.set_xticks(curve["days"].to_numpy())
    ax.yaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
    ax.legend(fontsize=8.5)
    return _png(fig)


RANKS = ("model", "bgnbd")
TIMING_MEANINGS = {
    "concordance": ("higher", "concordance index: P(the model orders a pair right) - 0.5 random, 1 perfect"),
    "integrated_brier": ("lower", "integrated Brier score over the grid (lower is better)"),
    "brier_30d": ("lower", "Brier score of P(order within 30 days)"),
    "brier_90d": ("lower", "Brier score of P(order within 90 days)"),
    "brier_180d": ("lower", "Brier score of P(order within 180 days)"),
    "mean_order_probability_30d": (None, "mean predicted P(order within 30 days)"),
    "order_rate_30d": (None, "observed share with an order within 30 days"),
    "mean_order_probability_90d": (None, "mean predicted P(order within 90 days)"),
    "order_rate_90d": (None, "observed share with an order within 90 days"),
    "mean_order_probability_180d": (None, "mean predicted P(order within 180 days)"),
    "order_rate_180d": (None, "observed share with an order within 180 days"),
}


def timing_section(timing: Mapping[str, Any], curve_figure_png: bytes | None = None) -> Section:
    """The report's "When will they order next" section: the next-order model against BG/NBD on the
    next-order test cutoff (``timing``: ``cutoff``, ``rows``, ``grid``, ``metrics`` per ranking, ``curve``)."""
    metrics = timing["metrics"]
    model, base = metrics["model"], metrics.get("bgnbd", {})
    figure = curve_figure_png or timing_figure(timing["curve"], f"Orders within t days, {timing['cutoff']}")
    return Section(
        "When will they order next: the next-order model",
        cards=[
            (
                f"concordance on {timing['cutoff']} (BG/NBD {base.get('concordance', float('nan')):.3f})",
                f"{model['concordance']:.3f}",
            ),
            (
                f"integrated Brier score (BG/NBD {base.get('integrated_brier', float('nan')):.4f})",
                f"{model['integrated_brier']:.4f}",
            ),
        ],
        paragraphs=[
            f"A discrete-time hazard model on LightGBM gives each customer a curve: the probability of at least one "
            f"order within {', '.join(str(d) for d in timing['grid'])} days of the cutoff, from which the scores "
            f"take order_probability_30d/90d/180d and the median days to the next order. It is judged on the "
            f"{timing['rows']:,} customers at {timing['cutoff']}, the latest cutoff followed up over the whole grid, "
            f"against BG/NBD's own P(no order within t) fitted on the same customers. Concordance ranks customers "
            f"by how soon they order (restricted mean time without an order); the Brier scores judge the "
            f"probabilities at each edge.",
        ],
        tables=[
            _metric_table(metrics, TIMING_MEANINGS, "Next-order model against BG/NBD (best per row highlighted)"),
            Table(
                timing["curve"][["days", "customers", "observed", *[c for c in RANKS if c in timing["curve"]]]],
                "Share with an order within t days: observed and mean predicted",
                formats={"days": "d", "customers": ",d", "observed": ".1%", "model": ".1%", "bgnbd": ".1%"},
            ),
        ],
        figures=[Figure(figure, "Observed vs predicted share of customers ordering within t days.")],
    )


CAMPAIGN_SECTION_TITLE = "What the campaigns achieved"
VERDICT_COLOURS = {"pays": "#2e9e5b", "does not pay": "#c0392b", "too small to tell": "#d9822b"}
VERDICT_ORDER = ("pays", "does not pay", "too small to tell", "no control group")


def campaign_figure(effects: pd.DataFrame, title: str = "Retention difference per action") -> bytes:
    """The retention difference, treatment minus control, of each action over its campaigns (the ``level``
    "action" rows of ``models.measure.measure_effects``) in percentage points, with its interval as error bars,
    coloured by verdict; a dotted line at 0."""
    rows = effects[effects["level"].eq("action") & effects["retention_diff_pp"].notna()]
    rows = rows.iloc[::-1]  # first action on top
    fig, ax = _axes(
        title, "retention difference, treatment - control (percentage points)", "", size=(6.8, 1.8 + 0.45 * len(rows))
    )
    y = np.arange(len(rows))
    diff = rows["retention_diff_pp"].to_numpy(dtype=np.float64)
    low = rows["retention_diff_pp_low"].to_numpy(dtype=np.float64)
    high = rows["retention_diff_pp_high"].to_numpy(dtype=np.float64)
    colours = [VERDICT_COLOURS.get(v, "#888888") for v in rows["verdict"]]
    ax.errorbar(diff, y, xerr=[diff - low, high - diff], fmt="none", ecolor="#5a6475", capsize=4, lw=1.4)
    ax.scatter(diff, y, c=colours, s=42, zorder=3)
    ax.axvline(0.0, color="#888888", ls=":", lw=1.2)
    counts = zip(rows["action"], rows["n_treatment"], rows["n_control"], strict=True)
    labels = [f"{a} ({t:,} / {c:,})" for a, t, c in counts]
    ax.set_yticks(y, labels, fontsize=8.5)
    ax.set_ylim(-0.7, max(len(rows), 1) - 0.3)
    for verdict, colour in VERDICT_COLOURS.items():
        ax.scatter([], [], c=colour, s=30, label=verdict)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, frameon=False)
    return _png(fig)


def _ci(low: pd.Series, high: pd.Series, spec: str) -> list[str]:
    return [
        f"[{a:{spec}}, {b:{spec}}]" if np.isfinite(a) and np.isfinite(b) else "–"
        for a, b in zip(low.to_numpy(dtype=np.float64), high.to_numpy(dtype=np.float64), strict=True)
    ]


def campaign_section(measure: Mapping[str, Any], figure_png: bytes | None = None) -> Section | None:
    """The report's "What the campaigns achieved" section from ``churn measure``'s metrics document (``status``,
    ``summary``, ``params``, ``effects``: one record per campaign and per action), or None when it has no rows
    (no contacts table, an empty one). ``figure_png``: :func:`campaign_figure` output (drawn when None)."""
    effects = pd.DataFrame(list(measure.get("effects") or []))
    if measure.get("status") != "measured" or effects.empty:
        return None
    summary, params = measure.get("summary", {}), measure.get("params", {})
    campaigns = effects[effects["level"].eq("campaign")]
    verdicts = campaigns["verdict"].value_counts()
    measured = f"{summary.get('measured', 0):,} of {measure['contacts']:,}"
    cards = [("contacts measured (followed up, first contact)", measured)]
    cards += [(f"campaigns: {v}", f"{int(verdicts[v]):,}") for v in VERDICT_ORDER if v in verdicts]
    confidence = float(params.get("confidence", 0.95))
    paragraphs = [
        f"Every contact of the contacts table, treatment against its campaign's control group: retention = an order "
        f"within {params.get('retention_days', '?')} days of the contact, net revenue = orders less refunds over "
        f"{params.get('revenue_days', '?')} days. Profit per contacted customer = margin "
        f"{params.get('value_margin', '?')} × revenue difference − mean cost of a treated contact. Intervals are "
        f"{confidence:.0%}, normal approximations (Wald for the retention difference, Welch for the revenue "
        f"difference); an action's 'all' row averages its campaigns weighted by their size. Verdicts: pays / does "
        f"not pay (the whole profit interval above / below 0), too small to tell (it covers 0, or a group has fewer "
        f"than {params.get('min_group_size', '?')} contacts), no control group. Only contacts followed up over both "
        f"windows count.",
        *summary.get("messages", []),
    ]
    table = pd.DataFrame(
        {
            "action": effects["action"],
            "campaign": effects["campaign_id"],
            "first contact": effects["first_contact"].astype(str),
            "treated": effects["n_treatment"].astype("int64"),
            "control": effects["n_control"].astype("int64"),
            "retention treated": effects["retention_treatment"].astype("float64"),
            "retention control": effects["retention_control"].astype("float64"),
            "retention diff pp": effects["retention_diff_pp"].astype("float64"),
            "retention CI": _ci(effects["retention_diff_pp_low"], effects["retention_diff_pp_high"], "+.1f"),
            "revenue diff": effects["revenue_diff"].astype("float64"),
            "mean cost": effects["mean_cost"].astype("float64"),
            "profit per customer": effects["profit_per_customer"].astype("float64"),
            "profit CI": _ci(effects["profit_low"], effects["profit_high"], "+,.2f"),
            "verdict": effects["verdict"],
            "note": effects["note"].fillna(""),
        }
    )
    formats = {
        "retention treated": ".1%",
        "retention control": ".1%",
        "retention diff pp": "+.1f",
        "revenue diff": "+,.2f",
        "mean cost": ",.2f",
        "profit per customer": "+,.2f",
    }
    figure = figure_png if figure_png is not None else campaign_figure(effects)
    return Section(
        CAMPAIGN_SECTION_TITLE,
        paragraphs=paragraphs,
        tables=[Table(table, "Per campaign, and per action over its campaigns (campaign 'all')", formats=formats)],
        figures=[
            Figure(
                figure,
                f"Retention difference per action (treatment - control, percentage points) with its {confidence:.0%} "
                f"interval; treated / control contacts in brackets, colour = verdict.",
            )
        ],
        cards=cards,
    )


def build_report(
    folds: Sequence[Any],
    backtest: pd.DataFrame,
    backtest_summary: pd.DataFrame,
    params: Mapping[str, Any],
    tiers: Mapping[str, Any],
    facts: Mapping[str, str],
    importance: Mapping[str, pd.DataFrame],
    figures: Mapping[str, Figure] | None = None,
    extra_sections: Sequence[Section] = (),
) -> str:
    """The evaluation report. ``folds``: ``pipelines.evaluate.Fold`` objects, the test fold first (with its
    ``details``); ``backtest`` / ``backtest_summary``: per-fold rows and their mean/std; ``params`` /
    ``tiers``: the ``evaluate`` and ``risk_tiers`` sections; ``facts``: run facts shown as they are;
    ``importance``: ``{"churn": frame, "clv": frame}`` with ``feature`` and ``gain``; ``figures``: the charts
    of ``evaluation_figures`` when the caller has drawn them already (also written as DVC plot images)."""
    test = folds[0]
    d = test.details
    if figures is None:
        figures = evaluation_figures(d, backtest, params["calibration_bins"])
    churn, clv, profit = test.churn, test.clv, test.profit
    baselines = [n for n in churn if n != "model"]
    best_base = max(baselines, key=lambda n: churn[n]["roc_auc"]) if baselines else None
    shares = [s for s in params["top_shares"]]
    pct = [f"{round(s * 100):d}" for s in shares]
    auc_mean = backtest_summary.loc["model", ("mean", "roc_auc")]
    auc_std = backtest_summary.loc["model", ("std", "roc_auc")]
    spread = f" ± {auc_std:.3f}" if np.isfinite(auc_std) else ""

    cards = [
        (
            f"churn ROC AUC on {test.churn_cutoff.date()}"
            + (f" (best baseline {_label(best_base)}: {churn[best_base]['roc_auc']:.3f})" if best_base else ""),
            f"{churn['model']['roc_auc']:.3f}",
        ),
        ("lift in the top 10 % (churn rate there over the overall rate)", f"{churn['model']['lift_top10']:.2f}×"),
        ("Brier score (calibrated probability error)", f"{churn['model']['brier']:.4f}"),
        (f"CLV normalised Gini on {test.clv_cutoff.date()}", f"{clv['model']['normalized_gini']:.3f}"),
        (
            f"best campaign: contact {profit['model']['best_share']:.0%} of customers, profit",
            _money(profit["model"]["max_profit"]),
        ),
        ("EMP per customer (acceptance rate uncertain)", f"{profit['model']['emp_per_customer']:.2f}"),
        (f"backtest ROC AUC over {len(folds)} cutoffs (mean ± std)", f"{auc_mean:.3f}{spread}"),
    ]
    headline = Section(
        "Headline",
        paragraphs=[
            f"Churn is scored on the {test.churn_rows:,} customers at the test cutoff {test.churn_cutoff.date()} "
            f"(observed churn rate {churn['model']['churn_rate']:.1%}); CLV on the {test.clv_rows:,} customers at "
            f"{test.clv_cutoff.date()}, the latest cutoff whose CLV horizon is complete. Baselines are scored on "
            f"exactly the same customers. Best value per row is highlighted.",
        ],
        cards=cards,
    )

    lift_rows = {
        f"lift_top{p}": ("higher", f"Churn rate in the top {p} % over the overall rate (1 = random).") for p in pct
    }
    capture_rows = {f"capture_top{p}": ("higher", f"Share of all churners found in the top {p} %.") for p in pct}
    churn_table = _metric_table(
        churn,
        {**CHURN_MEANINGS, **lift_rows, **capture_rows},
        "Churn metrics at the test cutoff",
        row_formats={"brier": ".4f", "ece": ".4f", **{k: ".1%" for k in capture_rows}},
    )
    churn_section = Section(
        "Churn: model against baselines",
        paragraphs=[
            "Recency rule: the churn rate observed in earlier cutoffs per recency bucket. RFM: the churn rate of "
            "the customer's recency-frequency-monetary cell in earlier cutoffs. BG/NBD: the probabilistic "
            "buy-till-you-die model's P(no order in the horizon), fitted on the customers' histories before the cutoff."
        ],
        tables=[churn_table],
        figures=[figures[name] for name in ("roc", "precision_recall", "calibration", "gains")],
    )

    lift_frames = []
    for name, table in d["lift"].items():
        t = table[["share", "customers", "churn_rate", "lift", "capture"]].copy()
        t.insert(0, "ranking", _label(name))
        lift_frames.append(t)
    decile = d["gains_deciles"]["model"][
        ["decile", "customers", "churners", "churn_rate", "mean_score", "lift", "cumulative_capture"]
    ]
    lift_section = Section(
        "Lift, capture and gains",
        paragraphs=[
            "Lift: how many times the overall churn rate the top of the list churns at. Capture: the share of "
            "all churners that list reaches. Decile 1 holds the 10 % with the highest predicted risk."
        ],
        tables=[
            Table(
                pd.concat(lift_frames, ignore_index=True),
                "Top shares of customers by churn risk",
                formats={"share": ".0%", "churn_rate": ".1%", "lift": ".2f", "capture": ".1%"},
            ),
            Table(
                decile.rename(columns={"mean_score": "mean probability"}),
                "Gains by decile (LightGBM model)",
                formats={
                    "churners": ",.0f",
                    "churn_rate": ".1%",
                    "mean probability": ".3f",
                    "lift": ".2f",
                    "cumulative_capture": ".1%",
                },
            ),
        ],
    )

    tier_rule = (
        f"probability >= {tiers['high']} is high, >= {tiers['medium']} medium, below that low"
        if tiers["method"] == "probability"
        else f"the top {tiers['high']:.0%} of customers are high, the next up to {tiers['medium']:.0%} medium"
    )
    tier_section = Section(
        "Risk tiers",
        paragraphs=[
            f"Tiers from the calibrated churn probability (params risk_tiers, method {tiers['method']}: "
            f"{tier_rule}). The observed churn rate per tier shows whether the tiers separate risk."
        ],
        tables=[
            Table(
                d["tiers"],
                "Tiers at the test cutoff",
                formats={"share": ".1%", "churners": ",.0f", "churn_rate": ".1%", "mean_probability": ".3f"},
            )
        ],
    )

    money_rankings = {n: profit[n] for n in profit}
    money_section = Section(
        "Money: what a retention campaign would earn",
        paragraphs=[
            f"A campaign contacts the top share of customers by a ranking. Each contact costs "
            f"{params['contact_cost']:g}; a contacted would-be churner accepts with probability "
            f"{params['acceptance_rate']:g}, stays (worth the margin {params['value_margin']:g} × their revenue "
            f"over the CLV horizon if they stay, mean {d['mean_value']:,.1f}, {params['retained_value']} estimate) "
            f"and costs the incentive {params['incentive_cost']:g}; "
            f"a contacted stayer takes the incentive too. Profits use the observed churn outcomes and the same "
            f"customer values for every ranking (Verbraken et al. 2013). EMP averages the best campaign's profit over "
            f"an acceptance rate ~ Beta({params['acceptance_alpha']:g}, {params['acceptance_beta']:g}).",
            f"Contacting everyone would earn {_money(d['contact_everyone_profit'])}. 'Model, ranked by expected "
            f"profit' orders customers by churn probability × value less costs (both models), instead of by "
            f"churn probability alone.",
            *(
                [
                    f"The scores' contact list (column contact: every customer whose expected profit is positive, "
                    f"no share picked by hand) would contact {d['contact_list']['share']:.1%} of these customers and "
                    f"earn {_money(d['contact_list']['profit'])}, against {_money(d['contact_list']['max_profit'])} "
                    f"at the best share in hindsight ({d['contact_list']['best_share']:.1%})."
                ]
                if "contact_list" in d
                else []
            ),
        ],
        tables=[
            _metric_table(
                money_rankings,
                PROFIT_MEANINGS,
                "Profit-maximising campaign per ranking",
                row_formats={
                    "best_share": ".1%",
                    "emp_share": ".1%",
                    "max_profit": ",.0f",
                    "max_profit_per_customer": ".2f",
                    "emp_per_customer": ".2f",
                },
            )
        ],
        figures=[figures["profit_curve"]],
    )

    clv_deciles = d["clv_deciles"]["model"]
    clv_section = Section(
        "Customer lifetime value: model against baselines",
        paragraphs=[
            f"Net revenue over the CLV horizon at {test.clv_cutoff.date()}. Recency rule and RFM predict the mean "
            f"revenue of their bucket or cell in earlier cutoffs; BG/NBD + Gamma-Gamma the expected number of orders "
            f"times the expected order value."
        ],
        tables=[
            _metric_table(
                clv,
                CLV_MEANINGS,
                "CLV metrics",
                row_formats={
                    "mae": ",.2f",
                    "rmse": ",.2f",
                    "decile_mape": ".1%",
                    "top10_capture": ".1%",
                    "total_predicted": ",.0f",
                    "total_actual": ",.0f",
                    "total_bias_pct": "+.1f",
                },
            ),
            Table(
                clv_deciles,
                "Deciles of predicted CLV (LightGBM model)",
                formats={
                    "mean_predicted": ",.1f",
                    "mean_actual": ",.1f",
                    "abs_pct_error": ".1%",
                    "share_of_actual": ".1%",
                },
            ),
        ],
        figures=[figures["clv_deciles"]],
    )

    summary_rows = []
    for name in backtest_summary.index:
        row = {"ranking": _label(name)}
        for metric in backtest_summary["mean"].columns:
            mean = backtest_summary.loc[name, ("mean", metric)]
            std = backtest_summary.loc[name, ("std", metric)]
            row[metric] = (
                "–" if not np.isfinite(mean) else (f"{mean:.3f} ± {std:.3f}" if np.isfinite(std) else f"{mean:.3f}")
            )
        summary_rows.append(row)
    backtest_section = Section(
        "Backtest: the same evaluation at earlier cutoffs",
        paragraphs=[
            f"Fold 1 is the test cutoff with the registered models; each earlier fold refits both models on data "
            f"before its cutoff only (same params, same purged time split) and scores models and baselines on its "
            f"customers. {len(folds)} folds (evaluate.backtest_cutoffs). Mean ± sample standard deviation over folds."
        ],
        tables=[
            Table(pd.DataFrame(summary_rows), "Mean ± std over folds"),
            Table(
                backtest.assign(ranking=backtest["ranking"].map(_label)),
                "Every fold",
                formats={"max_profit_per_customer": ".2f", "emp_per_customer": ".2f"},
            ),
        ],
        figures=[figures["backtest_roc_auc"]],
    )
    importance_section = Section(
        "Feature importance",
        paragraphs=["Total split gain of each feature in the registered boosters (top 20)."],
        figures=[
            Figure(importance_figure(importance["churn"], "Churn model: top 20 features"), "Churn model, by gain."),
            Figure(importance_figure(importance["clv"], "CLV model: top 20 features"), "CLV revenue model, by gain."),
        ],
    )
    fold_facts = [
        {
            "fold": f.number,
            "churn cutoff": str(f.churn_cutoff.date()),
            "churn rows": f.churn_rows,
            "CLV cutoff": str(f.clv_cutoff.date()),
            "CLV rows": f.clv_rows,
            "models refitted": f.refit,
        }
        for f in folds
    ]
    facts_section = Section(
        "Run facts",
        tables=[
            Table(pd.DataFrame({"fact": list(facts), "value": list(facts.values())}), "Data and run"),
            Table(pd.DataFrame(fold_facts), "Cutoffs and rows per fold"),
            Table(
                pd.DataFrame({"param": list(params), "value": [str(v) for v in params.values()]}),
                "params.yaml evaluate",
            ),
        ],
    )
    return render_page(
        "Churn and CLV evaluation",
        f"Test cutoff {test.churn_cutoff.date()} · MLflow run {facts.get('MLflow run', '?')} · churn model "
        f"{facts.get('churn model', '?').split(':')[0]} · CLV model {facts.get('CLV model', '?').split(':')[0]}",
        [
            headline,
            churn_section,
            lift_section,
            tier_section,
            money_section,
            clv_section,
            backtest_section,
            *extra_sections,
            importance_section,
            facts_section,
        ],
    )


def lifetime_section(params: LifetimeValueParams, period_days: int) -> Any:
    """The report's statement of the scores' ``lifetime_value`` assumptions (``period_days``: the CLV horizon the
    ``predicted_clv`` covers), with worked examples on three customers of predicted CLV 100."""
    clv = np.array([100.0, 100.0, 100.0])
    q = np.array([0.2, 0.5, 0.8])
    value = discounted_lifetime_value(
        clv,
        q,
        period_days=period_days,
        margin=params.margin,
        annual_discount_rate=params.annual_discount_rate,
        horizon_months=params.horizon_months,
    )
    examples = pd.DataFrame(
        {"predicted_clv": clv, "P(order within the CLV horizon)": q, "lifetime_value": np.round(value, 2)}
    )
    return Section(
        "Lifetime value: what the lifetime_value column assumes",
        paragraphs=lifetime_assumptions(params, period_days),
        tables=[Table(examples, "Worked examples (params score.lifetime_value)", formats={"lifetime_value": ".2f"})],
    )
