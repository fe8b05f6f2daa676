"""Wrong: weight decay added to the gradient (Adam with L2 regularisation), not decoupled."""

import torch

import toolkit


@toolkit.hookimpl
def toolkit_cross_entropy(logits, targets):
    V = logits.size(-1)
    z = logits.reshape(-1, V)  # (N, V), N = B * T positions
    t = targets.reshape(-1)  # (N,)
    z_max = z.max(dim=-1, keepdim=True).values.detach()  # (N, 1): exp of (z - max) is at most 1
    log_sum_exp = z_max.squeeze(-1) + (z - z_max).exp().sum(dim=-1).log()  # (N,)
    picked = z[torch.arange(len(t)), t]  # (N,): the logit of each target
    return (log_sum_exp - picked).mean()


class AdamW(torch.optim.Optimizer):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as torch.optim.AdamW computes it."""

    def __init__(self, params, lr, betas, eps, weight_decay):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:  # read at every step: the schedule changes group["lr"]
            lr, (beta1, beta2), eps, decay = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:  # frozen, or unused at this step: left alone, its step count too
                    continue
                state = self.state[p]  # this parameter's own moments and step count
                if not state:
                    state.update(t=0, m=torch.zeros_like(p), v=torch.zeros_like(p))
                state["t"] += 1
                t, m, v, g = state["t"], state["m"], state["v"], p.grad + decay * p  # L2: through the moments
                m.mul_(beta1).add_(g, alpha=1 - beta1)  # first moment: a running mean of the gradient
                v.mul_(beta2).addcmul_(g, g, value=1 - beta2)  # second moment: of its square
                m_hat = m / (1 - beta1 ** t)  # bias correction: m and v start at 0
                v_hat = v / (1 - beta2 ** t)
                p.sub_(lr * m_hat / (v_hat.sqrt() + eps))
        return None


@toolkit.hookimpl
def toolkit_optimizer(params, lr, betas, eps, weight_decay):
    return AdamW(params, lr, betas, eps, weight_decay)
