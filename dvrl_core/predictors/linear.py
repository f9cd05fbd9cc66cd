"""Linear predictors: L2-regularised logistic regression and ridge linear regression.

Both minimise the weighted objective that scikit-learn's estimators minimise with
``sample_weight`` (``LogisticRegression(C=1/alpha)``, ``Ridge(alpha)``), the intercept not
penalised, so a DVRL predictor "trained on the selected rows" is exactly the model the official
code refits every iteration.

Logistic regression is solved for all rollouts at once by Newton-type iterations preconditioned
with the inverse Hessian of the full-data problem at its optimum (exact when ``(d+1)(C-1)`` is
small, Kronecker-factored otherwise). DVRL's selections keep most rows, so that Hessian is close to
each rollout's own and the iteration converges in a handful of steps; it starts every fit from the
full-data solution, the same initial weights each time. Each step is two matrix products over all
rollouts, which is what makes the predictor cheap enough for many rollouts per iteration.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import ConfigError
from .base import BatchTrainer, Predictor, standardise_target

EXACT_HESSIAN_LIMIT = 1500
ANCHOR_ROWS = 200_000


def _with_bias(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return torch.cat([x.to(dtype), torch.ones(len(x), 1, dtype=dtype, device=x.device)], dim=1)


@dataclass
class _LogisticModels:
    theta: torch.Tensor  # [R, d+1, K]; K = 1 (binary, sigmoid) or C (softmax)


class _LogisticTrainer(BatchTrainer):
    def __init__(
        self, x: torch.Tensor, y: torch.Tensor, n_classes: int, alpha: float, max_iter: int,
        tol: float,
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
        self.alpha = alpha
        self.max_iter = max_iter
        self.tol = tol
        self.penalised = torch.ones(self.p, 1, dtype=self.dtype, device=x.device)
        self.penalised[-1] = 0.0  # the intercept is not penalised
        ones = torch.ones(1, self.n, dtype=self.dtype, device=x.device)
        theta = torch.zeros(1, self.p, self.k, dtype=self.dtype, device=x.device)
        # full-data solution: the shared starting point of every fit, and its curvature
        self._precondition_at(theta)
        for _ in range(4):
            theta = self._solve(ones, theta, anchor, max_iter)
            self._precondition_at(theta)
        self.theta0 = theta

    def _design(self, rows: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Features with the intercept column, and targets, for ``rows`` (None: all rows)."""
        x = self.raw if rows is None else self.raw[rows]
        y = self.labels if rows is None else self.labels[rows]
        if self.binary:
            target = y.to(self.dtype).unsqueeze(-1)  # [n, 1]
        else:
            target = torch.nn.functional.one_hot(y, self.n_classes).to(self.dtype)  # [n, C]
        return _with_bias(x, self.dtype), target

    # objective pieces ------------------------------------------------------------------------
    def _logits(self, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """[R, n, K] logits; one matrix product over all rollouts and classes."""
        r, p, k = theta.shape
        flat = theta.permute(1, 0, 2).reshape(p, r * k)
        return (x @ flat).reshape(len(x), r, k).permute(1, 0, 2)

    def _probabilities(self, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        logits = self._logits(x, theta)
        return torch.sigmoid(logits) if self.binary else torch.softmax(logits, dim=-1)

    @staticmethod
    def _transpose_product(x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """x^T residual for every rollout: [n, p], [R, n, K] -> [R, p, K]."""
        r, n, k = residual.shape
        flat = residual.permute(1, 0, 2).reshape(n, r * k)
        return (x.T @ flat).reshape(x.shape[1], r, k).permute(1, 0, 2)

    def _gradient(
        self, x: torch.Tensor, target: torch.Tensor, weights: torch.Tensor, theta: torch.Tensor
    ) -> torch.Tensor:
        total = weights.sum(-1).clamp_min(1.0)[:, None, None]  # [R,1,1]
        residual = (self._probabilities(x, theta) - target) * weights.unsqueeze(-1)
        grad = self._transpose_product(x, residual)
        return (grad + self.alpha * self.penalised * theta) / total

    def _precondition_at(self, theta: torch.Tensor) -> None:
        prob = self._probabilities(self.x, theta)[0]  # [n, K]
        ridge = self.alpha / self.n * self.penalised[:, 0] + 1e-8
        if self.p * self.k <= EXACT_HESSIAN_LIMIT:
            if self.binary:
                curvature = (prob * (1 - prob))[:, 0]
                hessian = (self.x * curvature[:, None]).T @ self.x / self.n
                hessian += torch.diag(ridge)
            else:
                # H[(j,c),(l,e)] = mean_i x_ij x_il (p_ic d_ce - p_ic p_ie)
                cov = torch.diag_embed(prob) - prob[:, :, None] * prob[:, None, :]  # [n,C,C]
                hessian = torch.einsum("nj,nl,nce->jcle", self.x, self.x, cov) / self.n
                hessian = hessian.reshape(self.p * self.k, self.p * self.k)
                hessian += torch.diag(ridge.repeat_interleave(self.k)) + 1e-6 * torch.eye(
                    self.p * self.k, dtype=self.dtype, device=self.x.device
                )
            self._inverse = torch.linalg.inv(hessian)
            self._kfac = None
        else:
            # Kronecker-factored curvature: E[diag(p) - pp^T] (x) E[x x^T]
            class_cov = (torch.diag_embed(prob) - prob[:, :, None] * prob[:, None, :]).mean(0)
            if self.binary:
                class_cov = (prob * (1 - prob)).mean(0).reshape(1, 1)
            second = self.x.T @ self.x / self.n
            eig_c, vec_c = torch.linalg.eigh(class_cov)
            eig_x, vec_x = torch.linalg.eigh(second)
            denominator = eig_x.clamp_min(0)[:, None] * eig_c.clamp_min(0)[None, :] + (
                self.alpha / self.n + 1e-6
            )
            self._kfac = (vec_x, vec_c, denominator)
            self._inverse = None

    def _step(self, grad: torch.Tensor) -> torch.Tensor:
        if self._kfac is None:
            r = grad.shape[0]
            flat = grad.reshape(r, self.p * self.k)
            return (flat @ self._inverse.T).reshape(r, self.p, self.k)
        vec_x, vec_c, denominator = self._kfac
        rotated = vec_x.T @ grad @ vec_c
        return vec_x @ (rotated / denominator) @ vec_c.T

    def _curvature_along(
        self, x: torch.Tensor, weights: torch.Tensor, theta: torch.Tensor, direction: torch.Tensor
    ) -> torch.Tensor:
        """d^T H_r d for each rollout r: the objective's curvature along ``direction``."""
        prob = self._probabilities(x, theta)  # [R, n, K]
        change = self._logits(x, direction)  # the logits' change along d
        if self.binary:
            data = (prob * (1 - prob) * change**2).squeeze(-1)
        else:
            mean_change = (prob * change).sum(-1, keepdim=True)
            data = (prob * (change - mean_change) ** 2).sum(-1)
        penalty = self.alpha * (self.penalised * direction**2).sum((1, 2))
        total = weights.sum(-1).clamp_min(1.0)
        return ((data * weights).sum(-1) + penalty) / total

    def _solve(
        self, weights: torch.Tensor, theta: torch.Tensor, rows: torch.Tensor | None,
        max_iter: int,
    ) -> torch.Tensor:
        """Preconditioned nonlinear conjugate gradients (Polak-Ribiere+) with a Newton step
        length along each direction, per rollout."""
        if rows is None and len(self.raw) == self.n:
            x, target = self.x, self.target
        else:
            x, target = self._design(rows)
        weights = weights.to(self.dtype)
        direction: torch.Tensor | None = None
        grad_prev = pre_prev = torch.zeros(0)
        for iteration in range(max_iter):
            grad = self._gradient(x, target, weights, theta)
            pre = self._step(grad)
            if direction is None:
                direction = -pre
            else:
                numerator = (grad * (pre - pre_prev)).sum((1, 2))
                denominator = (grad_prev * pre_prev).sum((1, 2)).clamp_min(1e-300)
                beta = (numerator / denominator).clamp_min(0.0)[:, None, None]
                direction = -pre + beta * direction
            slope = (grad * direction).sum((1, 2))
            curvature = self._curvature_along(x, weights, theta, direction).clamp_min(1e-300)
            theta = theta + (-slope / curvature)[:, None, None] * direction
            grad_prev, pre_prev = grad, pre
            # a convergence check costs a device sync: do it every few steps
            if iteration % 4 == 3 and float(grad.abs().max()) < self.tol:
                break
        return theta

    # BatchTrainer ----------------------------------------------------------------------------
    def fit(self, weights: torch.Tensor, rows: torch.Tensor | None = None) -> _LogisticModels:
        start = self.theta0.expand(weights.shape[0], -1, -1)
        return _LogisticModels(self._solve(weights, start, rows, self.max_iter))

    def predict(self, models: _LogisticModels, x: torch.Tensor) -> torch.Tensor:
        prob = self._probabilities(_with_bias(x, self.dtype), models.theta)
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
