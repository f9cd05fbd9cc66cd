"""Linear predictors: L2-regularised logistic regression and ridge linear regression.

Both minimise the weighted objective that scikit-learn's estimators minimise with
``sample_weight`` (``LogisticRegression(C=1/alpha)``, ``Ridge(alpha)``), the intercept not
penalised, so a DVRL predictor "trained on the selected rows" is exactly the model the official
code refits every iteration.

Logistic regression is solved for all rollouts at once by Newton-type iterations preconditioned
with the inverse Hessian of the full-data problem at its optimum (the full matrix up to 4,096
parameters, Kronecker-factored beyond). DVRL's selections keep most rows, so that Hessian is close
to each rollout's own and the iteration converges in a handful of steps; it starts every fit from
the full-data solution, the same initial weights each time (the optimum of a convex problem does
not depend on where the solver starts; only the number of steps does). Each step is two matrix
products over all rollouts, which is what makes the predictor cheap enough for many rollouts per
iteration.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning

from ..errors import ConfigError
from .base import BatchTrainer, Predictor, standardise_target

# the full Hessian (p*K parameters square) up to this size, else its Kronecker factors: on
# pixel features (MNIST, 257 x 10) the factored one left DVRL's fits far from the optimum after
# 30 steps, the full one converges in about 16, each step cheaper than with the factors. Its
# set-up (a few seconds at that size) pays off over DVRL's thousands of fits, not for one model
# (Predictor.fit), which keeps the smaller limit
EXACT_HESSIAN_LIMIT = 4096
SINGLE_FIT_EXACT_LIMIT = 1500
HESSIAN_ROWS = 2000  # a preconditioner needs no more rows than this
ANCHOR_ROWS = 200_000


def _with_bias(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return torch.cat([x.to(dtype), torch.ones(len(x), 1, dtype=dtype, device=x.device)], dim=1)


@dataclass
class _LogisticModels:
    theta: torch.Tensor  # [R, d+1, K]; K = 1 (binary, sigmoid) or C (softmax)


class _LogisticTrainer(BatchTrainer):
    """All rollouts' fits at once. Inside the solver the parameters are laid out [p, K, R] and
    the logits [n, K, R] (rows first, rollouts last), so that every product over the rows is one
    contiguous matrix product and every sum or maximum over the classes runs along whole rows
    of rollouts (over a last axis of ten classes the softmax took 2.8x longer on the CPU)."""

    def __init__(
        self, x: torch.Tensor, y: torch.Tensor, n_classes: int, alpha: float, max_iter: int,
        tol: float, exact_limit: int = EXACT_HESSIAN_LIMIT,
    ) -> None:
        # float32: the solution is accurate to ~1e-5, far below what moves a validation score, and
        # the matrix products run several times faster than in float64
        self.dtype = torch.float32
        self.raw, self.labels = x, y  # kept as given: no copy of a big table
        self.n_classes = n_classes
        self.binary = n_classes == 2
        self.k = 1 if self.binary else n_classes
        # the shared starting point and the curvature come from all rows, or from a seeded
        # sample of ANCHOR_ROWS rows on big tables (DVRL then trains on batches anyway)
        anchor = None
        if len(x) > ANCHOR_ROWS:
            generator = torch.Generator().manual_seed(0)
            anchor = torch.randperm(len(x), generator=generator)[:ANCHOR_ROWS].to(x.device)
        self.x, self.target = self._design(anchor)
        self.n, self.p = self.x.shape
        self._hessian_rows = None  # the preconditioner's rows: a seeded sample of big tables
        if self.n > HESSIAN_ROWS:
            generator = torch.Generator().manual_seed(1)
            self._hessian_rows = torch.randperm(self.n, generator=generator)[:HESSIAN_ROWS].to(
                x.device)
        self.alpha = alpha
        self.max_iter = max_iter
        self.tol = tol
        self.exact_limit = exact_limit
        self._inverse: torch.Tensor | None = None
        self._kfac: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self.penalised = torch.ones(self.p, 1, 1, dtype=self.dtype, device=x.device)
        self.penalised[-1] = 0.0  # the intercept is not penalised
        ones = torch.ones(1, self.n, dtype=self.dtype, device=x.device)
        theta = torch.zeros(self.p, self.k, 1, dtype=self.dtype, device=x.device)
        # full-data solution: the shared starting point of every fit, and its curvature
        self._precondition_at(theta)
        for _ in range(2 if self._kfac is None else 4):  # the full Hessian needs fewer rounds
            theta = self._solve(ones, theta, anchor, max_iter)
            self._precondition_at(theta)
        self.theta0 = theta  # [p, K, 1]

    def _design(self, rows: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Features with the intercept column, and targets [n, K, 1], for ``rows`` (None: all)."""
        x = self.raw if rows is None else self.raw[rows]
        y = self.labels if rows is None else self.labels[rows]
        if self.binary:
            target = y.to(self.dtype).reshape(-1, 1, 1)
        else:
            target = torch.nn.functional.one_hot(y, self.n_classes).to(self.dtype).unsqueeze(-1)
        return _with_bias(x, self.dtype), target

    # objective pieces (parameters [p, K, R], logits [n, K, R]) --------------------------------
    @staticmethod
    def _logits(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """[n, K, R] logits: one matrix product over all classes and rollouts."""
        p, k, r = theta.shape
        return (x @ theta.reshape(p, k * r)).reshape(len(x), k, r)

    def _activate(self, logits: torch.Tensor) -> torch.Tensor:
        if self.binary:
            return torch.sigmoid(logits)
        # written out: torch.softmax over a last axis of ten classes took 5x longer on the CPU
        shifted = (logits - logits.amax(1, keepdim=True)).exp_()
        return shifted.div_(shifted.sum(1, keepdim=True))

    @staticmethod
    def _transpose_product(x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """x^T residual for every rollout: [n, p], [n, K, R] -> [p, K, R]."""
        n, k, r = residual.shape
        return (x.T @ residual.reshape(n, k * r)).reshape(x.shape[1], k, r)

    def _gradient(
        self, x: torch.Tensor, target: torch.Tensor, weights: torch.Tensor, theta: torch.Tensor,
        prob: torch.Tensor,
    ) -> torch.Tensor:
        """The objective's gradient at ``theta`` (probabilities ``prob`` on ``x``); ``weights``
        are [n, 1, R]."""
        total = weights.sum(0).clamp_min(1.0)  # [1, R]
        grad = self._transpose_product(x, (prob - target).mul_(weights))
        return (grad + self.alpha * self.penalised * theta) / total

    def _precondition_at(self, theta: torch.Tensor) -> None:
        x = self.x if self._hessian_rows is None else self.x[self._hessian_rows]
        n, p, k = len(x), self.p, self.k
        prob = self._activate(self._logits(x, theta))[:, :, 0]  # [n, K]
        ridge = self.alpha / self.n * self.penalised[:, 0, 0] + 1e-8
        if p * k <= self.exact_limit:
            if self.binary:
                curvature = (prob * (1 - prob))[:, 0]
                hessian = (x * curvature[:, None]).T @ x / n
                hessian += torch.diag(ridge)
            else:
                # H[(j,c),(l,e)] = mean_i x_ij x_il (p_ic d_ce - p_ic p_ie): the diagonal blocks
                # (x p_c)^T x, less A^T A with A[i,(j,c)] = x_ij p_ic
                spread = (x[:, :, None] * prob[:, None, :]).reshape(n, p * k)
                diagonal = (spread.T @ x).reshape(p, k, p).permute(1, 0, 2)  # [K, p, p]
                hessian = -(spread.T @ spread).reshape(p, k, p, k)
                classes = torch.arange(k, device=x.device)
                hessian[:, classes, :, classes] += diagonal
                hessian = hessian.reshape(p * k, p * k) / n
                hessian += torch.diag(ridge.repeat_interleave(k)) + 1e-6 * torch.eye(
                    p * k, dtype=self.dtype, device=x.device
                )
            # symmetric positive definite: the Cholesky route is cheaper than a general inverse
            # (a factorisation that float32 cannot finish falls back to the pseudo-inverse)
            factor, info = torch.linalg.cholesky_ex(hessian)
            self._inverse = torch.cholesky_inverse(factor) if int(info) == 0 else \
                torch.linalg.pinv(hessian, hermitian=True)
            self._kfac = None
        else:
            # Kronecker-factored curvature: E[diag(p) - pp^T] (x) E[x x^T]
            class_cov = (torch.diag_embed(prob) - prob[:, :, None] * prob[:, None, :]).mean(0)
            if self.binary:
                class_cov = (prob * (1 - prob)).mean(0).reshape(1, 1)
            second = x.T @ x / n
            eig_c, vec_c = torch.linalg.eigh(class_cov)
            eig_x, vec_x = torch.linalg.eigh(second)
            denominator = eig_x.clamp_min(0)[:, None] * eig_c.clamp_min(0)[None, :] + (
                self.alpha / self.n + 1e-6
            )
            self._kfac = (vec_x, vec_c, denominator[:, :, None])
            self._inverse = None

    def _step(self, grad: torch.Tensor) -> torch.Tensor:
        """The preconditioned gradient, [p, K, R]: plain matrix products over all rollouts (the
        parameters' (j, c) order is the Hessian's)."""
        p, k, r = grad.shape
        if self._inverse is not None:
            return (self._inverse @ grad.reshape(p * k, r)).reshape(p, k, r)
        assert self._kfac is not None
        vec_x, vec_c, denominator = self._kfac
        rotated = vec_c.T @ (vec_x.T @ grad.reshape(p, k * r)).reshape(p, k, r)
        scaled = (vec_c @ (rotated / denominator)).reshape(p, k * r)
        return (vec_x @ scaled).reshape(p, k, r)

    def _curvature_along(
        self, weights: torch.Tensor, prob: torch.Tensor, direction: torch.Tensor,
        change: torch.Tensor,
    ) -> torch.Tensor:
        """d^T H_r d for each rollout r: the objective's curvature along ``direction``, where
        the probabilities are ``prob`` and ``change`` is the logits' change along d."""
        # in place where a temporary allows: these passes over [n, K, R] are most of a step's
        # time on multi-class tables
        if self.binary:
            data = (1 - prob).mul_(prob).mul_(change).mul_(change)  # [n, 1, R]
        else:
            centred = change - (prob * change).sum(1, keepdim=True)
            data = centred.mul_(centred).mul_(prob).sum(1, keepdim=True)
        penalty = self.alpha * (self.penalised * direction * direction).sum((0, 1))  # [R]
        total = weights.sum(0).clamp_min(1.0)[0]
        return ((data * weights).sum((0, 1)) + penalty) / total

    def _solve(
        self, weights: torch.Tensor, theta: torch.Tensor, rows: torch.Tensor | None,
        max_iter: int,
    ) -> torch.Tensor:
        """Preconditioned nonlinear conjugate gradients (Polak-Ribiere+) with a Newton step
        length along each direction, per rollout, from ``theta`` ([p, K, R or 1]); ``weights``
        are [R, n]. The logits are carried along (those of theta + a d are those of theta plus
        a times those of d), so a step costs two matrix products over the rows: the
        direction's logits and the gradient."""
        if rows is None and len(self.raw) == self.n:
            x, target = self.x, self.target
        else:
            x, target = self._design(rows)
        weights = weights.to(self.dtype).T.contiguous().unsqueeze(1)  # [n, 1, R]
        theta = theta.expand(-1, -1, weights.shape[2])
        direction: torch.Tensor | None = None
        grad_prev = pre_prev = torch.zeros(0)
        logits = self._logits(x, theta)
        # a rollout whose gradient is within tolerance stops moving: steps past convergence,
        # along curvature that float32 rounds to nothing, can be long enough to overflow
        # (150 classes, 2 rows selected: the parameters went to 3e8, then NaN)
        settled = torch.zeros(weights.shape[2], dtype=torch.bool, device=x.device)
        for iteration in range(max_iter):
            prob = self._activate(logits)
            grad = self._gradient(x, target, weights, theta, prob)
            settled |= grad.abs().amax((0, 1)) < self.tol
            pre = self._step(grad)
            if direction is None:
                direction = -pre
            else:
                numerator = (grad * (pre - pre_prev)).sum((0, 1))
                denominator = (grad_prev * pre_prev).sum((0, 1)).clamp_min(1e-30)
                beta = (numerator / denominator).clamp_min(0.0)  # [R]
                direction = -pre + beta * direction
            slope = (grad * direction).sum((0, 1))
            change = self._logits(x, direction)
            # 1e-30: the smallest that float32 keeps (a zero direction then takes a zero step)
            curvature = self._curvature_along(weights, prob, direction, change).clamp_min(1e-30)
            length = -slope / curvature  # [R]
            length = torch.where(settled | ~torch.isfinite(length), 0.0, length)
            theta = theta + length * direction
            logits = logits.add_(change.mul_(length))  # change is spent
            grad_prev, pre_prev = grad, pre
            # a convergence check costs a GPU a sync: there, every few steps
            due = iteration % 4 == 3 or x.device.type == "cpu"
            if due and bool(settled.all()):
                break
        return theta

    # BatchTrainer ----------------------------------------------------------------------------
    def fit(self, weights: torch.Tensor, rows: torch.Tensor | None = None) -> _LogisticModels:
        theta = self._solve(weights, self.theta0, rows, self.max_iter)
        return _LogisticModels(theta.permute(2, 0, 1))

    def predict(self, models: _LogisticModels, x: torch.Tensor) -> torch.Tensor:
        logits = self._logits(_with_bias(x, self.dtype), models.theta.permute(1, 2, 0))
        prob = self._activate(logits).permute(2, 0, 1)  # [R, m, K]
        if self.binary:
            prob = torch.cat([1 - prob, prob], dim=-1)
        return prob.float()


class LogisticRegression(Predictor):
    """L2-regularised logistic regression (softmax for more than two classes).

    ``alpha`` is the penalty on the summed loss (scikit-learn's ``C = 1 / alpha``).
    """

    name = "logistic_regression"
    tasks = ("classification",)

    def __init__(
        self, task: str = "classification", n_classes: int = 2, *, alpha: float = 1.0,
        max_iter: int = 30, tol: float = 1e-5, device="cpu", random_state: int = 0,
    ) -> None:
        super().__init__(task, n_classes, device=device, random_state=random_state)
        if alpha <= 0:
            raise ConfigError("alpha must be positive")
        self.alpha, self.max_iter, self.tol = alpha, max_iter, tol

    def params(self) -> dict:
        return {"alpha": self.alpha, "max_iter": self.max_iter}

    def trainer(self, x: torch.Tensor, y: torch.Tensor) -> BatchTrainer:
        return _LogisticTrainer(x, y, self.n_classes, self.alpha, self.max_iter, self.tol)

    def single_trainer(self, x: torch.Tensor, y: torch.Tensor) -> BatchTrainer:
        return _LogisticTrainer(x, y, self.n_classes, self.alpha, self.max_iter, self.tol,
                                exact_limit=SINGLE_FIT_EXACT_LIMIT)

    # one model (evaluations, trust checks): scikit-learn's L-BFGS on the same objective. The
    # batched solver is built for DVRL's strongly regularised fits that start near their optimum;
    # one weakly regularised model from scratch (C = 1 on MNIST's pixels, 10 classes) left it
    # 0.08 test accuracy short of what L-BFGS reaches (its tolerance is scikit-learn's default).
    def fit(self, x: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None):
        from sklearn.linear_model import LogisticRegression as LBFGSLogistic

        labels = np.asarray(y, dtype=np.int64)
        weight = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        present = labels if weight is None else labels[weight > 0]
        if len(np.unique(present)) < 2:  # one class left: the batched solver's answer
            self._single = None
            return super().fit(x, y, sample_weight)
        model = LBFGSLogistic(C=1.0 / self.alpha, max_iter=1000)  # scikit-learn tol 1e-4
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(np.asarray(x, dtype=np.float64), labels, sample_weight=weight)
        self._single = model
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        model = getattr(self, "_single", None)
        if model is None:
            return super().predict(x)
        probabilities = np.zeros((len(x), self.n_classes))
        probabilities[:, model.classes_] = model.predict_proba(np.asarray(x, dtype=np.float64))
        return probabilities


@dataclass
class _LinearModels:
    theta: torch.Tensor  # [R, d+1]


class _RidgeTrainer(BatchTrainer):
    def __init__(self, x: torch.Tensor, y: torch.Tensor, alpha: float) -> None:
        self.dtype = torch.float64
        self.raw = x  # kept as given: no copy of a big table
        target, self.mean, self.std = standardise_target(y)
        self.y = target.to(self.dtype)
        self.ridge = torch.full((x.shape[1] + 1,), alpha, dtype=self.dtype, device=x.device)
        self.ridge[-1] = 1e-10  # the intercept is not penalised

    def fit(self, weights: torch.Tensor, rows: torch.Tensor | None = None) -> _LinearModels:
        x = _with_bias(self.raw if rows is None else self.raw[rows], self.dtype)
        y = self.y if rows is None else self.y[rows]
        w = weights.to(self.dtype)
        gram = torch.einsum("np,rn,nq->rpq", x, w, x) + torch.diag(self.ridge)
        moment = torch.einsum("np,rn,n->rp", x, w, y)
        return _LinearModels(torch.linalg.solve(gram, moment.unsqueeze(-1)).squeeze(-1))

    def predict(self, models: _LinearModels, x: torch.Tensor) -> torch.Tensor:
        pred = _with_bias(x, self.dtype) @ models.theta.T  # [m, R]
        return (pred.T * self.std + self.mean).float()


class LinearRegression(Predictor):
    """Least squares with a small ridge penalty ``alpha`` (on standardised targets)."""

    name = "linear_regression"
    tasks = ("regression",)

    def __init__(
        self, task: str = "regression", n_classes: int = 0, *, alpha: float = 1e-3,
        device="cpu", random_state: int = 0,
    ) -> None:
        super().__init__(task, n_classes, device=device, random_state=random_state)
        self.alpha = alpha

    def params(self) -> dict:
        return {"alpha": self.alpha}

    def trainer(self, x: torch.Tensor, y: torch.Tensor) -> BatchTrainer:
        return _RidgeTrainer(x, y, self.alpha)
