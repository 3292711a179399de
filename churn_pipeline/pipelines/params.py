"""Loading a params.yaml section into a frozen dataclass, with errors that name the bad key."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from churn_pipeline.errors import (
    ParamsError,
)
from churn_pipeline.features.build import FeatureConfig
from churn_pipeline.features.cutoffs import CutoffSchedule
from churn_pipeline.models import evaluation as ev
from churn_pipeline.models import reasons as rsn
from churn_pipeline.models.actions import (
    DEFAULT_ACTIONS,
    ActionRule,
    validate_rules,
)
from churn_pipeline.models.lifetime import LifetimeValueParams
from churn_pipeline.pipelines.io import (
    parse_day,
)

T = TypeVar("T")
DEFAULT_PARAMS = Path("params.yaml")


def read_params(path: Path = DEFAULT_PARAMS) -> dict[str, Any]:
    """The whole params file as a dict; an absent file reads as empty (every section takes its defaults)."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path} is not valid YAML: {exc}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ParamsError(f"{path} must hold a mapping of sections at the top level.")
    return loaded


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if not isinstance(value, dict):
            raise ParamsError(f"{where} must be a mapping, got {value!r}.")
        return build_dataclass(hint, value, where)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where) if len(inner) == 1 else value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ParamsError(f"{where} must be a list, got {value!r}.")
        args = typing.get_args(hint)
        item = args[0] if args else Any
        return tuple(_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ParamsError(f"{where} must be a mapping, got {value!r}.")
        return dict(value)
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ParamsError(f"{where} must be a whole number, got {value!r}.")
    if hint is bool and not isinstance(value, bool):
        raise ParamsError(f"{where} must be true or false, got {value!r}.")
    if hint is str and not isinstance(value, str):
        return str(value)
    return value


def build_dataclass(cls: type[T], values: dict[str, Any], where: str) -> T:
    """Build frozen dataclass ``cls`` from ``values``; unknown keys and wrong types raise ParamsError."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ParamsError(f"{where} has unknown key(s) {unknown}; known keys: {sorted(fields)}.")
    hints = typing.get_type_hints(cls)
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in values.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ParamsError(f"{where}: {exc}") from exc


def load_section(cls: type[T], section: str, path: Path = DEFAULT_PARAMS) -> T:
    """Section ``section`` (dotted for nesting, e.g. ``train.churn``) of ``path`` as a ``cls``."""
    node: Any = read_params(path)
    for part in section.split("."):
        node = node.get(part, {}) if isinstance(node, dict) else {}
    if node is None:
        node = {}
    return build_dataclass(cls, node, f"{Path(path).name}:{section}")


ENGINES = ("duckdb", "spark")


@dataclass(frozen=True)
class FeaturesParams:
    """params.yaml ``features``: when to cut, which windows, who is eligible."""

    cutoffs: CutoffSchedule = field(default_factory=CutoffSchedule)
    windows_days: tuple[int, ...] = (30, 90, 180, 365)
    max_recency_days: int | None = 365
    engine: str = "duckdb"

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {self.engine!r}")


@dataclass(frozen=True)
class LabelsParams:
    """params.yaml ``labels``: label horizons in days, and the next-order labels' grid (edges in days after the
    cutoff; checked by ``FeatureConfig``: positive, strictly increasing)."""

    churn_horizon_days: int = 90
    clv_horizon_days: int = 180
    next_order_days: tuple[int, ...] = (14, 30, 60, 90, 120, 180)


def load_params(params_path: Path) -> tuple[FeaturesParams, FeatureConfig]:
    feats = load_section(FeaturesParams, "features", params_path)
    where = f"{Path(params_path).name}:features.cutoffs"
    if feats.cutoffs.scoring_date is not None:
        parse_day(feats.cutoffs.scoring_date, f"{where}.scoring_date", ParamsError)
    for i, day in enumerate(feats.cutoffs.dates):
        parse_day(day, f"{where}.dates[{i}]", ParamsError)
    labels = load_section(LabelsParams, "labels", params_path)
    try:
        config = FeatureConfig(
            windows_days=feats.windows_days,
            churn_horizon_days=labels.churn_horizon_days,
            clv_horizon_days=labels.clv_horizon_days,
            max_recency_days=feats.max_recency_days,
            next_order_days=labels.next_order_days,
        )
    except ValueError as exc:
        raise ParamsError(f"{params_path}: features/labels: {exc}") from exc
    return feats, config


def check_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise ParamsError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}.")
    return engine


PROMOTE_MODES = ("auto", "manual")


@dataclass(frozen=True)
class BoosterParams:
    """LightGBM hyper-parameters shared by both models (``n_estimators`` is a cap: early stopping decides)."""

    num_leaves: int = 31
    learning_rate: float = 0.1
    n_estimators: int = 300
    min_child_samples: int = 100
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    bagging_freq: int = 1
    lambda_l2: float = 1.0
    max_bin: int = 63
    early_stopping_rounds: int = 50


@dataclass(frozen=True)
class ChurnParams(BoosterParams):
    """params.yaml ``train.churn`` (defaults = the shipped params.yaml)."""

    imbalance: str = "none"
    calibration: str = "auto"
    offset: str | None = "bgnbd_churn_probability"
    early_stopping_metric: str = "auc"


@dataclass(frozen=True)
class ClvParams(BoosterParams):
    """params.yaml ``train.clv`` (defaults = the shipped params.yaml)."""

    learning_rate: float = 0.075
    n_estimators: int = 400
    objective: str = "tweedie"
    tweedie_variance_power: float = 1.5
    offset: str | None = "bgnbd_clv"
    early_stopping_metric: str = "gini"


@dataclass(frozen=True)
class NextOrderParams(BoosterParams):
    """params.yaml ``train.next_order``: the discrete-time hazard booster (churn_pipeline/models/survival.py); at most
    ``max_train_rows`` person-period rows (an even stride of the panel rows beyond that)."""

    early_stopping_rounds: int = 30
    max_train_rows: int = 3_000_000
    offset: str | None = "bgnbd"


@dataclass(frozen=True)
class GateParams:
    """How much worse than the champion a challenger may be on the same test rows and still be promoted."""

    churn_roc_auc_tolerance: float = 0.005
    churn_brier_tolerance: float = 0.002
    clv_gini_tolerance: float = 0.01
    clv_spearman_tolerance: float = 0.01
    next_order_concordance_tolerance: float = 0.005
    next_order_brier_tolerance: float = 0.002


@dataclass(frozen=True)
class TrainParams:
    """params.yaml ``train``. ``n_validation`` and ``purge`` take ``auto``: the validation count and purge that
    the features stage's cutoff schedule planned (``panel.features.json`` ``schedule``), else 2 and true."""

    n_validation: int | str = "auto"
    purge: bool | str = "auto"
    seed: int = 42
    experiment: str = "churn-pipeline"
    promote: str = "auto"
    max_category_levels: int = 50
    churn: ChurnParams = field(default_factory=ChurnParams)
    clv: ClvParams = field(default_factory=ClvParams)
    next_order: NextOrderParams = field(default_factory=NextOrderParams)
    gate: GateParams = field(default_factory=GateParams)

    def __post_init__(self) -> None:
        if self.n_validation != "auto" and (
            isinstance(self.n_validation, bool) or not isinstance(self.n_validation, int) or self.n_validation < 1
        ):
            raise ValueError(f"n_validation must be a whole number >= 1 or auto, got {self.n_validation!r}")
        if self.purge != "auto" and not isinstance(self.purge, bool):
            raise ValueError(f"purge must be true, false or auto, got {self.purge!r}")
        if self.promote not in PROMOTE_MODES:
            raise ValueError(f"promote must be auto or manual, got {self.promote!r}")
        if (
            isinstance(self.max_category_levels, bool)
            or not isinstance(self.max_category_levels, int)
            or self.max_category_levels < 1
        ):
            raise ValueError(f"max_category_levels must be a whole number >= 1, got {self.max_category_levels!r}")

    def split_settings(self, manifest: dict) -> tuple[int, bool]:
        """``(n_validation, purge)`` with ``auto`` resolved from the panel manifest's schedule."""
        plan = manifest.get("schedule") or {}
        n_validation = self.n_validation if self.n_validation != "auto" else plan.get("n_validation") or 2
        purge = self.purge if self.purge != "auto" else plan.get("purge", True) is not False
        return int(n_validation), bool(purge)

    def estimator(self, kind: str, manifest: dict) -> Any:
        """An unfitted ``kind`` model (churn, clv or next_order) with these params on the manifest's features
        (``models.factory.build_estimator``: the one factory of every fit, train and backtest alike)."""
        from churn_pipeline.models.factory import build_estimator

        return build_estimator(
            kind,
            manifest,
            getattr(self, kind),
            seed=self.seed,
            max_category_levels=self.max_category_levels,
        )


RETAINED_VALUES = ("conditional", "expected")


@dataclass(frozen=True)
class EvaluateParams:
    """params.yaml ``evaluate`` (comments there)."""

    backtest_cutoffs: int = 3
    top_shares: tuple[float, ...] = (0.05, 0.10, 0.20)
    calibration_bins: int = 10
    contact_cost: float = 1.0
    incentive_cost: float = 10.0
    acceptance_rate: float = 0.3
    acceptance_alpha: float = 6.0
    acceptance_beta: float = 14.0
    value_margin: float = 0.3
    retained_value: str = "conditional"
    min_stay_probability: float = 0.05
    plot_points: int = 200

    def __post_init__(self) -> None:
        if self.backtest_cutoffs < 1:
            raise ValueError(f"backtest_cutoffs must be >= 1 (1 = the test cutoff only), got {self.backtest_cutoffs}")
        if not self.top_shares or any(not 0 < s <= 1 for s in self.top_shares):
            raise ValueError(f"top_shares must be shares in (0, 1], got {list(self.top_shares)}")
        if 0.1 not in self.top_shares:
            raise ValueError(f"top_shares must include 0.1 (the headline lift), got {list(self.top_shares)}")
        if self.calibration_bins < 2 or self.plot_points < 10:
            raise ValueError("calibration_bins must be >= 2 and plot_points >= 10")
        if self.acceptance_alpha <= 0 or self.acceptance_beta <= 0:
            raise ValueError("acceptance_alpha and acceptance_beta (the Beta prior of the acceptance rate) must be > 0")
        if self.retained_value not in RETAINED_VALUES:
            raise ValueError(f"retained_value must be one of {RETAINED_VALUES}, got {self.retained_value!r}")
        if not 0 < self.min_stay_probability <= 1:
            raise ValueError(f"min_stay_probability must lie in (0, 1], got {self.min_stay_probability}")
        self.campaign  # noqa: B018 - validates the campaign's numbers

    @property
    def campaign(self) -> ev.Campaign:
        return ev.Campaign(self.contact_cost, self.incentive_cost, self.acceptance_rate, self.value_margin)


@dataclass(frozen=True)
class ReasonsParams:
    """params.yaml ``score.reasons``: how contributions are computed (models.reasons) and what never is a reason."""

    method: str = "auto"
    shap_max_rows: int = 50_000
    ignore: tuple[str, ...] = ("cutoff_month", "cutoff_day_of_year")

    def __post_init__(self) -> None:
        if self.method not in rsn.METHODS:
            raise ValueError(f"method must be one of {rsn.METHODS}, got {self.method!r}")


@dataclass(frozen=True)
class ControlGroupParams:
    """params.yaml ``score.control_group``: the share held out of every action and the salt of its hash."""

    share: float = 0.05
    salt: str = "churn-control-group-1"

    def __post_init__(self) -> None:
        if not 0.0 <= self.share < 1.0:
            raise ValueError(f"share must be in [0, 1), got {self.share}")
        if not self.salt:
            raise ValueError("salt must not be empty")


@dataclass(frozen=True)
class DriftParams:
    """params.yaml ``score.drift``: PSI above ``psi_warning`` prints a warning."""

    psi_warning: float = 0.2


@dataclass(frozen=True)
class ScoreParams:
    """params.yaml ``score``. ``min_stay_probability`` floors 1 - churn_probability in ``value_if_retained``
    (models.evaluation.value_if_retained; the evaluate stage's ``evaluate.min_stay_probability``, same default)."""

    model_alias: str = "champion"
    min_stay_probability: float = 0.05
    reasons: ReasonsParams = field(default_factory=ReasonsParams)
    control_group: ControlGroupParams = field(default_factory=ControlGroupParams)
    drift: DriftParams = field(default_factory=DriftParams)
    lifetime_value: LifetimeValueParams = field(default_factory=LifetimeValueParams)
    actions: tuple[ActionRule, ...] = DEFAULT_ACTIONS

    def __post_init__(self) -> None:
        if not 0 < self.min_stay_probability <= 1:
            raise ValueError(f"min_stay_probability must lie in (0, 1], got {self.min_stay_probability}")
        validate_rules(self.actions)


def campaign_economics(params_path: Path) -> ev.Campaign:
    """The campaign economics of the expected profit: params ``evaluate`` (contact and incentive cost, acceptance
    rate, margin), the same the evaluation's profit curve and EMP use, so the contact list and the report agree."""
    return load_section(EvaluateParams, "evaluate", params_path).campaign
