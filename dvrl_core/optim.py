"""Adam (Kingma and Ba, ICLR 2015) without the import that torch's optimisers pay on first use.

``torch.optim``'s ``step`` is wrapped so that its first call imports ``torch._dynamo``, the
compiler's front end: 1-2 s of a fresh process's time (machine-dependent), a good part of a
``dvrl value`` run on a 1,000-row table, for a compiler DVRL never uses. This :class:`Adam`
performs the same update with the same multi-tensor operations in the same order as
``torch.optim.Adam(foreach=True)`` with its defaults (no weight decay, no AMSGrad), so it gives
the same parameters (a test checks it against torch's, bit for bit), and its ``state_dict`` has
torch's layout: a checkpoint written by either loads into the other.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


class Adam:
    """``torch.optim.Adam(params, lr, betas, eps, foreach=True)``, for tensors that need grad.
    As in torch, each parameter counts its own steps (a parameter without a gradient is
    skipped)."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError("Adam needs at least one parameter")
        self.lr, self.betas, self.eps = float(lr), (float(betas[0]), float(betas[1])), float(eps)
        self.steps = [0] * len(self.params)
        self.exp_avg = [torch.zeros_like(p, memory_format=torch.preserve_format)
                        for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p, memory_format=torch.preserve_format)
                           for p in self.params]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.detach_().zero_()

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient."""
        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        if not live:
            return
        params = [self.params[i] for i in live]
        grads = [g for g in (p.grad for p in params) if g is not None]
        exp_avg = [self.exp_avg[i] for i in live]
        exp_avg_sq = [self.exp_avg_sq[i] for i in live]
        beta1, beta2 = self.betas
        for i in live:
            self.steps[i] += 1
        torch._foreach_lerp_(exp_avg, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sq, beta2)
        torch._foreach_addcmul_(exp_avg_sq, grads, grads, 1 - beta2)
        step_size = [(self.lr / (1 - beta1 ** float(self.steps[i]))) * -1 for i in live]
        correction2_sqrt = [(1 - beta2 ** float(self.steps[i])) ** 0.5 for i in live]
        denominator = torch._foreach_sqrt(exp_avg_sq)
        torch._foreach_div_(denominator, correction2_sqrt)
        torch._foreach_add_(denominator, self.eps)
        torch._foreach_addcdiv_(params, exp_avg, denominator, step_size)

    def state_dict(self) -> dict[str, Any]:
        """torch.optim.Adam's layout: ``state`` per parameter index and one parameter group."""
        state = {i: {"step": torch.tensor(float(self.steps[i])),
                     "exp_avg": self.exp_avg[i].clone(),
                     "exp_avg_sq": self.exp_avg_sq[i].clone()}
                 for i in range(len(self.params)) if self.steps[i] > 0}
        group = {"lr": self.lr, "betas": self.betas, "eps": self.eps, "weight_decay": 0,
                 "amsgrad": False, "maximize": False, "foreach": True, "capturable": False,
                 "differentiable": False, "fused": None, "decoupled_weight_decay": False,
                 "params": list(range(len(self.params)))}
        return {"state": state, "param_groups": [group]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` or from a ``torch.optim.Adam`` state dict."""
        groups = state_dict["param_groups"]
        if len(groups) != 1 or len(groups[0]["params"]) != len(self.params):
            raise ValueError("the state belongs to another set of parameters")
        group = groups[0]
        if group.get("weight_decay", 0) or group.get("amsgrad") or group.get("maximize"):
            raise ValueError("the state is of an Adam with weight decay, AMSGrad or maximize")
        self.lr, self.eps = float(group["lr"]), float(group["eps"])
        self.betas = (float(group["betas"][0]), float(group["betas"][1]))
        for i, p in enumerate(self.params):
            saved = state_dict["state"].get(i)
            if saved is None:
                self.steps[i] = 0
                self.exp_avg[i] = torch.zeros_like(p)
                self.exp_avg_sq[i] = torch.zeros_like(p)
                continue
            self.steps[i] = int(float(saved["step"]))
            self.exp_avg[i] = saved["exp_avg"].to(p.device, p.dtype).clone()
            self.exp_avg_sq[i] = saved["exp_avg_sq"].to(p.device, p.dtype).clone()
