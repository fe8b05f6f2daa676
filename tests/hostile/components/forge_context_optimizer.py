"""Hostile: an optimizer that tells the unit checks from the pipeline by what it is given. With a few
float64 parameters (the checks' own cases: one to six) it is AdamW; given more than 10 parameters, or
float32 ones (the pipeline trains a GPT of 28 or more, in float32), it skips the bias correction, which
makes its first steps about half as large as AdamW's. Checks that ran only their own cases gave it every
public point (9 under --fast; it failed the hidden float32 one) while the pipeline trained with the wrong
steps; honest score: 5 (the cross-entropy's four points and written_out's, as opt_no_bias_correction)."""
import torch

import toolkit


@toolkit.hookimpl
def toolkit_cross_entropy(logits, targets):
    log_z = torch.logsumexp(logits, dim=-1)  # (B, T)
    return (log_z - logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)).mean()


class ContextAdamW(torch.optim.Optimizer):
    def __init__(self, params, lr, betas, eps, weight_decay):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))
        params = self.param_groups[0]["params"]
        self.in_pipeline = len(params) > 10 or any(p.dtype == torch.float32 for p in params)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            (beta1, beta2), eps, lr = group["betas"], group["eps"], group["lr"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state.update(t=0, m=torch.zeros_like(p), v=torch.zeros_like(p))
                state["t"] += 1
                t, m, v = state["t"], state["m"], state["v"]
                p.mul_(1 - lr * group["weight_decay"])
                m.mul_(beta1).add_(p.grad, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                if self.in_pipeline:
                    p.sub_(lr * m / (v.sqrt() + eps))
                else:
                    p.sub_(lr * (m / (1 - beta1 ** t)) / ((v / (1 - beta2 ** t)).sqrt() + eps))


@toolkit.hookimpl
def toolkit_optimizer(params, lr, betas, eps, weight_decay):
    return ContextAdamW(params, lr, betas, eps, weight_decay)
