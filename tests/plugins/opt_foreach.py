"""Correct, written otherwise: AdamW over all parameters at once with torch._foreach_* (as torch's
multi-tensor kernels do), and the cross-entropy by torch.logsumexp and gather."""

import torch

import toolkit


@toolkit.hookimpl
def toolkit_cross_entropy(logits, targets):
    log_z = torch.logsumexp(logits, dim=-1)  # (B, T)
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (B, T)
    return (log_z - picked).mean()


class ForeachAdamW(torch.optim.Optimizer):
    def __init__(self, params, lr, betas, eps, weight_decay):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            beta1, beta2 = group["betas"]
            for p in params:
                if not self.state[p]:
                    self.state[p].update(step=0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
                self.state[p]["step"] += 1
            grads = [p.grad for p in params]
            ms = [self.state[p]["exp_avg"] for p in params]
            vs = [self.state[p]["exp_avg_sq"] for p in params]
            torch._foreach_mul_(params, 1 - group["lr"] * group["weight_decay"])
            torch._foreach_lerp_(ms, grads, 1 - beta1)  # m + (1 - beta1) (g - m)
            torch._foreach_mul_(vs, beta2)
            torch._foreach_addcmul_(vs, grads, grads, 1 - beta2)
            for p, m, v in zip(params, ms, vs):  # the step sizes differ by parameter (their own t)
                t = self.state[p]["step"]
                denom = (v / (1 - beta2 ** t)).sqrt_().add_(group["eps"])
                p.addcdiv_(m, denom, value=-group["lr"] / (1 - beta1 ** t))


@toolkit.hookimpl
def toolkit_optimizer(params, lr, betas, eps, weight_decay):
    return ForeachAdamW(params, lr, betas, eps, weight_decay)
