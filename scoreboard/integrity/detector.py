"""The anomaly model: an Isolation Forest over a window's :class:`~.features.Population`, and its verdicts.

Every feature enters the model in robust units on its suspicious side only: transformed (a
log for heavy-tailed ones), measured from the population's median in spreads (median to p95),
and clipped at 0 on the ordinary side; one more column holds the furthest-out of them. So a
user is isolated for being far out where scripts go (fast, regular, sleepless, at the
cooldowns, from many addresses) and never for being unusually slow, irregular or loyal to one
address. docs/anomalies.md gives the settings, their reasons and the benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.ensemble import IsolationForest

from .features import FEATURES, HIGH, Population, transform

# Scores at or above this are flagged: tuned with ``python -m bench.anomalies --seed 1`` (docs/anomalies.md).
DEFAULT_THRESHOLD = 0.56
# Trees of the forest: past ~200 the flags barely move from seed to seed; fit and score take seconds at 100,000 users.
N_ESTIMATORS = 200
# Users drawn for each tree: isolation works on small samples (the original paper's 256), but with about ten
# features a user far out on one of them needs deeper trees to be cut off on it (measured: docs/anomalies.md).
MAX_SAMPLES = 1024
# "Markedly": a feature moved this many robust spreads (median to p95) towards the suspicious side.
MARKED_CHANGE = 2.0
# The features a verdict explains itself with.
REASONS = 3

_SPECS = {f.name: f for f in FEATURES}


@dataclass
class Verdict:
    """One user's judgement.

    ``score`` is ``-IsolationForest.score_samples``, in (0, 1]: 2 to the power of minus the
    user's mean isolation depth over that of an average point, so about 0.5 for an ordinary
    user and towards 1 for one isolated in a few splits. ``flagged``: ``score >= threshold``.
    ``reasons``: the :data:`REASONS` features on which the user is furthest out on the suspicious
    side, in robust units, as ``{"feature", "value", "typical": {"median", "p95"}}`` (the
    population's, ``p95`` on the suspicious side). ``features``: every feature's value.
    """

    user_id: str
    score: float
    flagged: bool
    reasons: list[dict]
    features: dict[str, float]


def _units(name: str, values: np.ndarray, typical: dict[str, dict[str, float]]) -> np.ndarray:
    """Values of feature ``name`` in robust units: spreads beyond the median on the suspicious side, >= 0."""
    spec, stats = _SPECS[name], typical[name]
    distance = (transform(spec, values) - transform(spec, stats["median"])) / stats["spread"]
    return np.maximum(distance if spec.suspicious == HIGH else -distance, 0.0)


def model_inputs(units: np.ndarray) -> np.ndarray:
    """What the forest is fitted on: the robust units, and one more column, the furthest-out of them.

    The extra column lets one extreme behaviour weigh like several moderate ones: a tree cuts on one
    feature at a time, so a user far out on a single feature (and ordinary on the rest) is otherwise
    isolated only by the few cuts that happen to fall on that feature.
    """
    furthest = units.max(axis=1, keepdims=True) if units.shape[1] else np.zeros((len(units), 1))
    return np.hstack([units, furthest])


def robust_units(population: Population) -> np.ndarray:
    """The model's input: every user's features in robust units (n x k, 0 = ordinary side of the median)."""
    typical = population.typical()
    columns = [_units(name, population.values[:, j], typical) for j, name in enumerate(population.names)]
    return np.column_stack(columns) if columns else np.zeros((len(population), 0))


def judge(
    population: Population, threshold: float = DEFAULT_THRESHOLD, seed: int = 0, contamination: float | None = None
) -> list[Verdict]:
    """Fit the forest on ``population`` and judge every user in it (in its order).

    ``seed`` is the forest's ``random_state``. ``contamination``, when given, caps the share of
    the population flagged: the bar becomes the higher of ``threshold`` and the scores'
    ``1 - contamination`` quantile (a safety valve should the whole crowd's behaviour shift).
    """
    n = len(population)
    if n == 0:
        return []
    units = robust_units(population)
    inputs = model_inputs(units)
    forest = IsolationForest(
        n_estimators=N_ESTIMATORS, max_samples=min(MAX_SAMPLES, n), random_state=seed, n_jobs=1
    ).fit(inputs)
    scores = -forest.score_samples(inputs)
    bar = threshold
    if contamination is not None:
        bar = max(threshold, float(np.quantile(scores, 1.0 - contamination)))
    typical = population.typical()
    # The furthest-out features first; a stable sort keeps the FEATURES order among equals.
    order = np.argsort(-units, axis=1, kind="stable")[:, :REASONS]
    names = population.names
    verdicts = []
    for row, user_id in enumerate(population.user_ids):
        values = population.values[row]
        reasons = [
            {
                "feature": names[j],
                "value": float(values[j]),
                "typical": {"median": typical[names[j]]["median"], "p95": typical[names[j]]["p95"]},
            }
            for j in order[row]
        ]
        features = {name: float(value) for name, value in zip(names, values, strict=True)}
        verdicts.append(Verdict(user_id, float(scores[row]), bool(scores[row] >= bar), reasons, features))
    return verdicts


def changed_markedly(before: dict[str, float], after: dict[str, float], population: Population) -> bool:
    """Whether behaviour ``after`` differs markedly from ``before`` (both feature dicts, e.g. a verdict's).

    Markedly: some feature moved at least :data:`MARKED_CHANGE` robust spreads of ``population``
    towards its suspicious side (both measured in the model's units, so movement on the ordinary
    side of the median counts for nothing). A cleared user is flagged again only then: the same
    behaviour, or less of it, was already judged acceptable. Features missing from either are skipped.
    """
    typical = population.typical()
    for name in population.names:
        if name not in before or name not in after:
            continue
        was, now = _units(name, np.array([before[name], after[name]], dtype=float), typical)
        if now - was >= MARKED_CHANGE:
            return True
    return False
