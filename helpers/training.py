r"""A small deterministic torch training loop, with gradient clipping written out.

    history = train(model, batches, loss_fn, steps=300, optimizer="adam", lr=1e-2, clip=("norm", 1.0))

One step:  zero grads -> loss = loss_fn(model, x, y) -> backward -> ||g|| -> clip -> ||g|| again -> step.
||g|| is the total L2 norm over all parameters, sqrt(sum_p ||grad_p||^2), as in torch.nn.utils.clip_grad_norm_.

Clipping (Pascanu, Mikolov & Bengio 2013, "On the difficulty of training recurrent neural networks", §3.2):
    ("norm", c):   g <- g * c / ||g||   if ||g|| > c      length capped at c, direction kept
    ("value", c):  g <- clamp(g, -c, c)                  each coordinate capped: the direction can turn

The trap it avoids: `model.parameters()` is a generator. Iterate it once to measure the norm and again to
clip, and the second pass sees no parameters: nothing is clipped and nothing complains. `clip_gradients`
materialises the parameters into a list first.

A non-finite loss or gradient norm stops training before the parameters are touched: History.diverged is
True and the last entry records the blow-up, so a notebook can show a divergence instead of crashing.
"""
import math
import numbers
import random
from dataclasses import dataclass

import numpy as np
import torch

from .tasks import _check_int

OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop}
CLIP_KINDS = ("norm", "value")


def set_seed(seed):
    """Seed python's random, numpy's global RNG and torch in one call."""
    seed = _check_int("seed", seed, 0)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------- gradients

def _grads(parameters):
    """The .grad tensors of parameters (a tensor, a list or a one-shot generator), read in a single pass."""
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    return [p.grad for p in parameters if p.grad is not None]


def _total_norm(grads):
    """sqrt(sum of squares of every entry of every grad), accumulated in float64."""
    if not grads:
        return 0.0
    norms = torch.stack([torch.linalg.vector_norm(g, dtype=torch.float64) for g in grads])  # (P,)
    return float(torch.linalg.vector_norm(norms))


def _check_clip(clip):
    """-> (kind, threshold), or (None, None) for no clipping."""
    if clip is None:
        return None, None
    ok = (isinstance(clip, (tuple, list)) and len(clip) == 2 and clip[0] in CLIP_KINDS
          and isinstance(clip[1], numbers.Real) and not isinstance(clip[1], bool)
          and math.isfinite(clip[1]) and clip[1] > 0)
    if not ok:
        raise ValueError(f"clip must be None, ('norm', max_norm) or ('value', clip_value) with a threshold > 0. "
                         f"Expected one of them, got {clip!r}")
    return clip[0], float(clip[1])


def grad_norm(parameters):
    """Total L2 norm of the gradients of parameters, a float (parameters without .grad are skipped)."""
    return _total_norm(_grads(parameters))


def clip_gradients(parameters, clip):
    """Clip the gradients of parameters in place. -> (norm_before, norm_after), total L2 norms.

    clip: None (measure only), ("norm", max_norm) or ("value", clip_value); see the module docstring.
    """
    kind, threshold = _check_clip(clip)
    grads = _grads(parameters)  # one list, used for the norm and for the clipping
    before = _total_norm(grads)
    if kind == "norm" and before > threshold:
        for g in grads:
            g.mul_(threshold / before)
    elif kind == "value":
        for g in grads:
            g.clamp_(-threshold, threshold)
    return before, (before if kind is None else _total_norm(grads))


# ----------------------------------------------------------------------------- training loop

@dataclass
class History:
    """What train() measured, one entry per logged step (every step with log_every=1).

    step (K,) int64 step index; loss (K,); grad_norm (K,) total norm before clipping; grad_norm_clipped (K,)
    after clipping (both nan on a step whose loss was not finite: no backward ran). diverged: training
    stopped at the last entry because its loss or gradient norm was not finite. optimizer: the torch optimizer
    train() stepped, so its state (e.g. Adam's moment estimates) can be read afterwards.
    """
    step: np.ndarray
    loss: np.ndarray
    grad_norm: np.ndarray
    grad_norm_clipped: np.ndarray
    diverged: bool = False
    optimizer: object = None

    @property
    def final_loss(self):
        """The loss of the last step taken (inf or nan if training diverged)."""
        return float(self.loss[-1])


def _batch_source(batches, steps):
    """-> next_batch(step) -> (x, y): batches itself if callable, else the next item of the iterable."""
    if callable(batches):
        return batches
    try:
        it = iter(batches)
    except TypeError:
        raise ValueError(f"batches must be a callable batches(step) -> (x, y) or an iterable of (x, y). "
                         f"Expected one of them, got {type(batches).__name__}") from None

    def next_batch(step):
        try:
            return next(it)
        except StopIteration:
            raise ValueError(f"batches ran out: it must yield one (x, y) per step. "
                             f"Expected {steps}, got {step}") from None
    return next_batch


def train(model, batches, loss_fn, *, steps, optimizer="sgd", lr, clip=None, seed=0, log_every=1):
    """Train model in place for `steps` steps. -> History.

    batches   callable batches(step) -> (x, y), or an iterable yielding (x, y) (one per step)
    loss_fn   loss_fn(model, x, y) -> scalar tensor
    optimizer "sgd" | "adam" | "rmsprop", plain torch.optim with learning rate lr (> 0)
    clip      None | ("norm", max_norm) | ("value", clip_value), applied after every backward
    seed      torch.manual_seed(seed) before the first step (dropout, batches drawn with torch); the model's
              initial weights are the caller's: build it under set_seed(...) for a reproducible run
    log_every record every log_every-th step, plus the last step taken
    """
    steps = _check_int("steps", steps, 1)
    log_every = _check_int("log_every", log_every, 1)
    seed = _check_int("seed", seed, 0)
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {list(OPTIMIZERS)}. Expected one of them, got {optimizer!r}")
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0. Expected > 0, got {lr!r}")
    _check_clip(clip)
    next_batch = _batch_source(batches, steps)

    torch.manual_seed(seed)
    params = list(model.parameters())
    opt = OPTIMIZERS[optimizer](params, lr=lr)
    model.train()
    rows, diverged = [], False  # rows: (step, loss, norm before clipping, norm after)
    for step in range(steps):
        opt.zero_grad(set_to_none=True)
        x, y = next_batch(step)
        loss = loss_fn(model, x, y)
        if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
            raise ValueError(f"loss_fn must return a scalar tensor. Expected shape (), "
                             f"got {tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__}")
        value, before, after = loss.item(), math.nan, math.nan
        if math.isfinite(value):
            loss.backward()
            before, after = clip_gradients(params, clip)
        diverged = not (math.isfinite(value) and math.isfinite(before))
        if diverged or step % log_every == 0 or step == steps - 1:
            rows.append((step, value, before, after))
        if diverged:
            break
        opt.step()
    step, loss, before, after = (np.array(column) for column in zip(*rows))
    return History(step, loss, before, after, diverged, opt)
