"""The prior DVRL starts from: a model of p(y | x) that pools every source of evidence the simple
controls use, weighted by how well each predicts the clean validation labels.

DVRL's estimator takes the "marginal" |onehot(y) - f(x)| as an input, and (``prior_skip``) starts
from the log-odds of f(x)'s probability of the given label. The official code fits f on the
validation rows only. The controls show that other evidence is as strong on some tables: a model
of the training rows' own labels, cross-fitted so that no row is scored by a model that saw it
(self-confidence; Northcutt et al., *Confident Learning*, JAIR 2021), or a tree model where the
classes are not linearly separable. No single source wins everywhere. So the prior pools them:

    log q(c | x) = sum_k w_k log p_k(c | x) + b_c - log Z(x),    w_k >= 0

(a weighted geometric pool; Genest and Zidek, *Combining probability distributions*, 1986) with
the weights and biases fitted by maximum likelihood on the validation rows, which are clean. The
validation-fitted sources are scored there by K-fold cross-fitting within the validation rows, so
the weights see each source's out-of-sample quality. A source that does not help gets a weight
near zero: on a table where the validation model is best, q is that model.

Sources (``SOURCES``): logistic regression and LightGBM, each fitted on the validation rows and
cross-fitted on the training rows. Regression keeps the validation model (see ``dvrl.DVRL``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .data import PreparedData
from .stream import predict_in_chunks, take_rows
from .threads import lightgbm_threads

SOURCES = ("validation_logistic", "validation_lightgbm", "train_logistic", "train_lightgbm")
FOLDS = 5
# on bigger tables the training-row sources are cross-fitted on a seeded sample of this many
# rows; every other row is scored by a model fitted on the whole sample (which never saw it)
CROSS_FIT_ROWS = 200_000
FLOOR = 1e-4  # no source may say "impossible": one confident mistake would dominate the pool


@dataclass
class PooledPrior:
    """Class probabilities for the training rows, with the pool's weights per source."""

    train_probabilities: np.ndarray  # [n_train, C]
    weights: dict[str, float]
    validation_log_loss: float  # of the pool, on the validation rows (cross-fitted sources)


def _standardiser(reference: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    mean = reference.mean(0, dtype=np.float64)
    scale = reference.std(0, dtype=np.float64)
    scale[scale == 0] = 1.0
    return lambda x: ((x - mean) / scale).astype(np.float32)


def _fit_predict(kind: str, x: np.ndarray, y: np.ndarray, targets: list[np.ndarray],
                 n_classes: int, seed: int) -> list[np.ndarray]:
    """Fit ``kind`` on (x, y) and return its class probabilities [m, C] on each of ``targets``;
    classes missing from ``y`` get probability 0 before the floor."""
    present = np.unique(y)
    if len(present) < 2:  # one class only in this fold: it is all the model can say
        out = []
        for t in targets:
            p = np.zeros((len(t), n_classes))
            p[:, present[0]] = 1.0
            out.append(p)
        return out
    if kind == "logistic":
        from sklearn.linear_model import LogisticRegression

        scale = _standardiser(x)
        model = LogisticRegression(C=1.0, max_iter=1000)
        model.fit(scale(x), y)
        raw = [predict_in_chunks(lambda part: model.predict_proba(scale(part)), t) for t in targets]
    else:
        import lightgbm as lgb

        model = lgb.LGBMClassifier(n_estimators=100, learning_rate=0.1, num_leaves=15,
                                   min_child_samples=10, random_state=seed,
                                   deterministic=True, n_jobs=lightgbm_threads(x.size),
                                   verbose=-1)
        model.fit(x, y)
        raw = [predict_in_chunks(lambda part: np.asarray(model.predict_proba(part)), t)
               for t in targets]
    out = []
    for p in raw:
        full = np.zeros((len(p), n_classes), dtype=p.dtype)
        full[:, model.classes_] = p
        out.append(full)
    return out


def _cross_fit(kind: str, x: np.ndarray, y: np.ndarray, others: list[np.ndarray],
               n_classes: int, seed: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Out-of-fold probabilities for the rows of (x, y), and the fold models' mean on each of
    ``others``. Past ``CROSS_FIT_ROWS`` rows, the folds are those of a seeded sample and the
    other rows are scored by a model fitted on the whole sample."""
    n = len(y)
    sample = None
    if n > CROSS_FIT_ROWS:
        sample = np.sort(np.random.default_rng([seed, 11]).choice(n, CROSS_FIT_ROWS,
                                                                  replace=False))
        x_fit, y_fit = take_rows(x, sample), y[sample]
    else:
        x_fit, y_fit = x, y
    order = np.random.default_rng(seed).permutation(len(y_fit))
    own_fit = np.zeros((len(y_fit), n_classes))
    pooled = [np.zeros((len(o), n_classes)) for o in others]
    for fold in np.array_split(order, FOLDS):
        rest = np.setdiff1d(order, fold, assume_unique=True)
        predicted = _fit_predict(kind, x_fit[rest], y_fit[rest], [x_fit[fold], *others],
                                 n_classes, seed)
        own_fit[fold] = predicted[0]
        for total, p in zip(pooled, predicted[1:], strict=True):
            total += p / FOLDS
    if sample is None:
        return own_fit, pooled
    own = _fit_predict(kind, x_fit, y_fit, [x], n_classes, seed)[0].astype(np.float32)
    own[sample] = own_fit
    return own, pooled


def _log(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, FLOOR, None)
    return np.log(p / p.sum(1, keepdims=True))


def _fit_pool(log_probabilities: np.ndarray, y: np.ndarray,
              l2: float = 1e-2) -> tuple[np.ndarray, np.ndarray, float]:
    """Weights w >= 0 (one per source) and class biases b maximising the likelihood of ``y``
    under softmax(sum_k w_k log p_k + b); ``log_probabilities`` is [K, m, C]."""
    import torch

    logs = torch.as_tensor(log_probabilities, dtype=torch.float64)
    labels = torch.as_tensor(y)
    k, _, c = logs.shape
    raw = torch.zeros(k, dtype=torch.float64, requires_grad=True)  # softplus(raw) = w
    bias = torch.zeros(c, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([raw, bias], max_iter=200, line_search_fn="strong_wolfe")

    def loss_fn() -> torch.Tensor:
        weights = torch.nn.functional.softplus(raw)
        scores = torch.einsum("k,kmc->mc", weights, logs) + bias
        loss = torch.nn.functional.cross_entropy(scores, labels)
        return loss + l2 * (weights ** 2).sum() + l2 * (bias ** 2).sum()

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    optimiser.step(closure)
    with torch.no_grad():
        weights = torch.nn.functional.softplus(raw)
        scores = torch.einsum("k,kmc->mc", weights, logs) + bias
        nll = float(torch.nn.functional.cross_entropy(scores, labels))
    return weights.numpy(), bias.detach().numpy(), nll


def pooled_prior(data: PreparedData, random_state: int = 0) -> PooledPrior:
    """The pooled model of p(y | x) (module docstring); classification only."""
    if data.task != "classification":
        raise ValueError("the pooled prior is for classification")
    c, seed = data.n_classes, random_state
    xv, yv, xt, yt = data.valid.x, data.valid.y, data.train.x, data.train.y
    on_valid, on_train = [], []
    for kind in ("logistic", "lightgbm"):
        # fitted on the validation rows: cross-fitted there, all of them for the training rows
        valid_own, _ = _cross_fit(kind, xv, yv, [], c, seed)
        on_valid.append(valid_own)
        on_train.append(_fit_predict(kind, xv, yv, [xt], c, seed)[0])
    for kind in ("logistic", "lightgbm"):
        # fitted on the training rows' own (noisy) labels, cross-fitted
        train_own, (valid_mean,) = _cross_fit(kind, xt, yt, [xv], c, seed)
        on_valid.append(valid_mean)
        on_train.append(train_own)
    weights, bias, nll = _fit_pool(np.stack([_log(p) for p in on_valid]), yv)
    scores = np.broadcast_to(bias, (len(xt), c)).astype(np.float64)
    for weight, p in zip(weights, on_train, strict=True):  # one source at a time: big tables
        scores += weight * _log(p)
    del on_train
    scores -= scores.max(1, keepdims=True)
    probabilities = np.exp(scores, out=scores)
    probabilities /= probabilities.sum(1, keepdims=True)
    return PooledPrior(probabilities, dict(zip(SOURCES, weights.round(4).tolist(),
                                               strict=True)), nll)


def given_label_probability(data: PreparedData, prior: PooledPrior) -> np.ndarray:
    """q(given label | x) for every training row: the prior's own value of each row."""
    return prior.train_probabilities[np.arange(len(data.train)), data.train.y]
