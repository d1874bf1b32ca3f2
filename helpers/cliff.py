r"""The loss cliff of one recurrent unit, gradient descent on it, and a small RNN whose training spikes.

One unit, no input (Pascanu, Mikolov & Bengio 2013, §2.3, eq. 8 and Fig. 6; they call the state x_t, here it is h_t
as in the other lessons, where x_t is the input):

    h_t = w σ(h_{t-1}) + b,   t = 1..T,      E(w, b) = (σ(h_T) - target)²,   h_0 = 0.5, target = 0.7, T = 50

Backpropagation through time on one unit, δ_t = dE/dh_t (the total derivative: every path from h_t to E):

    δ_T = 2 (σ(h_T) - target) σ'(h_T),     δ_{t-1} = δ_t · w σ'(h_{t-1}),
    dE/dw = Σ_t δ_t σ(h_{t-1}),            dE/db = Σ_t δ_t.

Unrolled, δ_k = δ_T · ∂h_T/∂h_k with ∂h_T/∂h_k = Π_{t=k+1..T} w σ'(h_{t-1}): a product of T - k Jacobians.

Where the wall comes from (`fixed_points`): the map h -> w σ(h) + b has two attractors only for w > 4 AND b in a
window around -w/2 (between two saddle-node bifurcations); elsewhere it has one. At b = -2.2 the second, high
attractor is born at w ≈ 4.3365, together with an unstable fixed point that separates the two basins; just after
(w ≈ 4.3376) that boundary passes h_0 = 0.5 and h_0 switches basin. For a finite T the switch of h_T is blurred:
just left of the bifurcation h_t creeps through a bottleneck where w σ'(h) ≈ 1 for dozens of steps, so the product
of Jacobians stays large and h_T (and the loss) jumps within a tiny change of w. That is the cliff; at T = 50 it
sits at w ≈ 4.329 and it moves onto the basin crossing as T grows.

`descend` runs gradient descent (or Adam) on (w, b) from a fixed start, clipping the gradient first if asked,
with the same two clipping rules as helpers.training:

    ("norm", c):   g <- g * c / ||g||   if ||g|| > c      direction kept
    ("value", c):  g <- clamp(g, -c, c)                  each coordinate capped: the direction can turn

It runs on Python floats (~100 steps in a few ms), so a live panel can redo the whole run on every move;
`loss_and_grad` is the same computation vectorised over arrays of (w, b), for surfaces.

The RNN part (`recall_*`, `recurrent_gain`, `adam_effective_lr`) is the small torch
problem the lesson trains with helpers.training.train: a tanh RNN that must recall the first of T one-hot
symbols (helpers.tasks.delayed_recall with lag = T - 1).
"""
import math
import numbers

import numpy as np
import torch

from . import cells, tasks, training
from .memory import RecallRNN

H0, TARGET, T_STEPS = 0.5, 0.7, 50
OPTIMIZERS = ("sgd", "adam")
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8  # torch.optim.Adam's defaults


# ----------------------------------------------------------------------------- validation

def _check_real(name, value, positive=False):
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (positive and value <= 0):
        what = "a finite number > 0" if positive else "a finite number"
        raise ValueError(f"{name} must be {what}. Expected {what}, got {value!r}")
    return float(value)


def _check_array(name, value):
    a = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite. Expected finite values, got {value!r:.60}")
    return a


# ----------------------------------------------------------------------------- the one-unit model, vectorised

def forward(w, b, T=T_STEPS, h0=H0):
    """States of the one-unit RNN. w, b: arrays that broadcast to shape S. -> hs (T+1, *S), hs[0] = h0."""
    T = tasks._check_int("T", T, 1)
    h0 = _check_real("h0", h0)
    w, b = np.broadcast_arrays(_check_array("w", w), _check_array("b", b))
    hs = np.empty((T + 1,) + w.shape)
    hs[0] = h0
    for t in range(1, T + 1):
        hs[t] = w * cells.sigmoid(hs[t - 1]) + b
    return hs


def loss_and_grad(w, b, T=T_STEPS, h0=H0, target=TARGET):
    """E = (σ(h_T) - target)² and its gradient by BPTT. w, b broadcast to S. -> (E, dE/dw, dE/db), each (*S)."""
    target = _check_real("target", target)
    hs = forward(w, b, T, h0)                            # (T+1, *S)
    w = np.broadcast_to(np.asarray(w, dtype=np.float64), hs.shape[1:])
    s = cells.sigmoid(hs)                                # (T+1, *S)
    loss = (s[-1] - target) ** 2
    delta = 2.0 * (s[-1] - target) * s[-1] * (1.0 - s[-1])   # δ_T = dE/dh_T
    dw, db = np.zeros_like(loss), np.zeros_like(loss)
    for t in range(hs.shape[0] - 1, 0, -1):
        dw += delta * s[t - 1]
        db += delta
        delta = delta * w * s[t - 1] * (1.0 - s[t - 1])     # δ_{t-1} = δ_t ∂h_t/∂h_{t-1}
    return loss, dw, db


def state_jacobians(w, b, T=T_STEPS, h0=H0):
    """∂h_T/∂h_k = Π_{t=k+1..T} w σ'(h_{t-1}) for k = 0..T (entry T is 1). w, b broadcast to S. -> (T+1, *S)."""
    hs = forward(w, b, T, h0)
    w = np.broadcast_to(np.asarray(w, dtype=np.float64), hs.shape[1:])
    s = cells.sigmoid(hs[:-1])                           # (T, *S)  σ(h_{t-1}) for t = 1..T
    factors = w * s * (1.0 - s)                          # (T, *S)  ∂h_t/∂h_{t-1}
    out = np.ones_like(hs)
    with np.errstate(over="ignore", under="ignore"):
        out[:-1] = np.cumprod(factors[::-1], axis=0)[::-1]   # out[k] = Π_{t>k} factors
    return out


def fixed_points(w, b):
    """Fixed points h* = w σ(h*) + b of the one-unit map, and their slopes w σ'(h*). -> (h (n,), slope (n,)), sorted.

    n is 1 or 3 (2 exactly at a saddle-node bifurcation). A fixed point is an attractor when |slope| < 1.
    Three fixed points (two attractors and the unstable one between them, the boundary of their basins) need
    w > 4 and b inside a window around -w/2. Found by bisection on each interval where h -> w σ(h) + b - h is
    monotone (at most three: the map's slope w σ'(h) crosses 1 at most twice), so no root can be missed.
    """
    w, b = _check_real("w", w), _check_real("b", b)

    def f(h):
        return w * _sigmoid(h) + b - h

    lo, hi = min(b, w + b) - 1.0, max(b, w + b) + 1.0    # every fixed point lies in [min(b, w+b), max(b, w+b)]
    cuts = [lo]
    if w > 4.0:                                          # w σ'(h) = 1 at σ(h) = (1 ± sqrt(1 - 4/w)) / 2
        r = math.sqrt(1.0 - 4.0 / w)
        for s in ((1.0 - r) / 2.0, (1.0 + r) / 2.0):
            if 0.0 < s < 1.0:
                cuts.append(min(max(math.log(s / (1.0 - s)), lo), hi))
    cuts.append(hi)
    roots = []
    for a, c in zip(cuts[:-1], cuts[1:]):
        fa, fc = f(a), f(c)
        if fa == 0.0 or fa * fc < 0.0 or fc == 0.0:
            for _ in range(200):                         # bisection to machine precision
                m = 0.5 * (a + c)
                if m in (a, c):
                    break
                fm = f(m)
                if fm == 0.0:
                    a = c = m
                    break
                if (fm < 0.0) == (fa < 0.0):
                    a, fa = m, fm
                else:
                    c = m
            root = a if fa == 0.0 else 0.5 * (a + c)
            if not roots or abs(root - roots[-1]) > 1e-9:
                roots.append(root)
    h = np.array(roots)
    s = np.array([_sigmoid(v) for v in roots])
    return h, w * s * (1.0 - s)


# ----------------------------------------------------------------------------- the one-unit model, scalar (fast path)

def _sigmoid(x):
    if x >= 0.0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def _loss_grad_scalar(w, b, T, h0, target):
    """loss_and_grad for one (w, b) on Python floats: ~40x faster than numpy on 0-d arrays."""
    s_prev = [0.0] * T                  # σ(h_{t-1}) for t = 1..T
    h = h0
    for t in range(T):
        s = _sigmoid(h)
        s_prev[t] = s
        h = w * s + b
    sT = _sigmoid(h)
    loss = (sT - target) ** 2
    delta = 2.0 * (sT - target) * sT * (1.0 - sT)
    dw = db = 0.0
    for t in range(T - 1, -1, -1):
        s = s_prev[t]
        dw += delta * s
        db += delta
        delta *= w * s * (1.0 - s)
    return loss, dw, db


def clip_vector(g, clip):
    """helpers.training.clip_gradients for one numpy vector. g (P,) -> clipped copy (P,) float64."""
    kind, c = training._check_clip(clip)
    g = _check_array("g", g).copy()
    if g.ndim != 1:
        raise ValueError(f"g must be a vector (P,). Expected 1 dim, got {g.ndim} (shape {g.shape})")
    if kind == "norm":
        n = float(np.sqrt(g @ g))
        if n > c:
            g *= c / n
    elif kind == "value":
        np.clip(g, -c, c, out=g)
    return g


def descend(w0, b0, lr, steps=100, clip=None, optimizer="sgd", T=T_STEPS, h0=H0, target=TARGET):
    """Gradient descent (optimizer="sgd") or Adam (torch's defaults) on E(w, b) from (w0, b0).

    clip: None | ("norm", c) | ("value", c), applied to the raw gradient before the optimizer uses it.
    Returns a dict of numpy arrays:
        theta (steps+1, 2)   the (w, b) visited, theta[0] = (w0, b0)
        loss (steps+1,)      E at each theta
        grad (steps, 2)      the raw gradient at theta[k];  grad_norm (steps,) its L2 norm
        clipped (steps, 2)   the gradient after clipping (what the optimizer received)
        update (steps, 2)    theta[k+1] - theta[k]
        scale (steps, 2)     the per-coordinate step multiplier: lr for SGD, lr / (sqrt(v_hat) + eps) for Adam
    """
    w, b = _check_real("w0", w0), _check_real("b0", b0)
    lr = _check_real("lr", lr, positive=True)
    steps = tasks._check_int("steps", steps, 1)
    T = tasks._check_int("T", T, 1)
    h0, target = _check_real("h0", h0), _check_real("target", target)
    kind, c = training._check_clip(clip)
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}. Expected one of them, got {optimizer!r}")
    (beta1, beta2), eps = ADAM_BETAS, ADAM_EPS
    theta = np.empty((steps + 1, 2))
    loss = np.empty(steps + 1)
    grad, clipped, scale = np.empty((steps, 2)), np.empty((steps, 2)), np.empty((steps, 2))
    m = [0.0, 0.0]
    v = [0.0, 0.0]
    for k in range(steps):
        theta[k] = w, b
        loss[k], gw, gb = _loss_grad_scalar(w, b, T, h0, target)
        grad[k] = gw, gb
        if kind == "norm":
            n = math.hypot(gw, gb)
            if n > c:
                gw, gb = gw * c / n, gb * c / n
        elif kind == "value":
            gw, gb = min(max(gw, -c), c), min(max(gb, -c), c)
        clipped[k] = gw, gb
        if optimizer == "sgd":
            sw = sb = lr
            dw, db = gw, gb
        else:  # Adam, Kingma & Ba 2015, Algorithm 1
            m = [beta1 * m[0] + (1 - beta1) * gw, beta1 * m[1] + (1 - beta1) * gb]
            v = [beta2 * v[0] + (1 - beta2) * gw * gw, beta2 * v[1] + (1 - beta2) * gb * gb]
            c1, c2 = 1 - beta1 ** (k + 1), 1 - beta2 ** (k + 1)
            sw = lr / (math.sqrt(v[0] / c2) + eps)
            sb = lr / (math.sqrt(v[1] / c2) + eps)
            dw, db = m[0] / c1, m[1] / c1
        scale[k] = sw, sb
        w, b = w - sw * dw, b - sb * db
    theta[steps] = w, b
    loss[steps] = _loss_grad_scalar(w, b, T, h0, target)[0]
    return {"theta": theta, "loss": loss, "grad": grad, "grad_norm": np.hypot(grad[:, 0], grad[:, 1]),
            "clipped": clipped, "update": np.diff(theta, axis=0), "scale": scale}


VALLEY_LOSS, PLATEAU_LOSS, FLAT_GRAD, BOUNCE_SPAN, BOUNCE_RISES = 1e-2, 0.05, 1e-2, 10.0, 2
OUTCOMES = ("valley", "plateau", "bouncing", "slope")


def outcome(result, last=10):
    """Where a `descend` run ended, judged on its last `last` losses (one of OUTCOMES):
    "valley"    every one < 1e-2;
    "plateau"   the final loss > 0.05 with a gradient norm < 1e-2: on the flat plateau, barely moving;
    "bouncing"  the losses span more than 10x and rise at least twice: hopping back and forth across the wall;
    "slope"     anything else: not settled yet (typically still on its way down the slope).
    """
    last = tasks._check_int("last", last, 2)
    tail = result["loss"][-last:]
    if tail.max() < VALLEY_LOSS:
        return "valley"
    if tail[-1] > PLATEAU_LOSS and result["grad_norm"][-1] < FLAT_GRAD:
        return "plateau"
    if tail.max() > BOUNCE_SPAN * tail.min() and np.sum(np.diff(tail) > 0) >= BOUNCE_RISES:
        return "bouncing"
    return "slope"


# ----------------------------------------------------------------------------- the RNN that spikes (torch)

DTYPES = (torch.float32, torch.float64)


def _check_dtype(dtype):
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be torch.float32 or torch.float64. Expected one of them, got {dtype!r}")
    return dtype


def recall_model(n_symbols=4, hidden_size=32, seed=0, dtype=torch.float32):
    """A RecallRNN with torch's default init drawn under training.set_seed(seed): the same weights every call.

    dtype float64 gives the same initial weights (drawn in float32, then converted) with float64 arithmetic.
    """
    n_symbols = tasks._check_int("n_symbols", n_symbols, 2)
    hidden_size = tasks._check_int("hidden_size", hidden_size, 1)
    dtype = _check_dtype(dtype)
    training.set_seed(seed)
    return RecallRNN(n_symbols, hidden_size).to(dtype)


def recall_batches(T=10, batch_size=32, n_symbols=4, seed=0, dtype=torch.float32):
    """batches(step) -> (x (B, T, K) of dtype, y (B,) int64): recall the FIRST symbol (lag = T - 1).

    Batch `step` is drawn from its own seed (seed, step): any run with the same seed sees the same data.
    """
    dtype = _check_dtype(dtype)
    T = tasks._check_int("T", T, 2)
    batch_size = tasks._check_int("batch_size", batch_size, 1)
    n_symbols = tasks._check_int("n_symbols", n_symbols, 2)
    seed = tasks._check_int("seed", seed, 0)

    def batches(step):
        rng = np.random.default_rng([seed, tasks._check_int("step", step, 0)])
        x, y = tasks.delayed_recall(batch_size, T, T - 1, n_symbols, rng=rng)
        return torch.from_numpy(x).to(dtype), torch.from_numpy(y)
    return batches


def recall_loss(model, x, y):
    """Mean cross-entropy of the read-out (nats). Chance level: ln K."""
    return torch.nn.functional.cross_entropy(model(x), y)


def recurrent_gain(model, x):
    """||∂h_T/∂h_0||_2 per sequence: the spectral norm of the product of the T recurrent Jacobians
    diag(1 - h_t²) W_hh of model.rnn (tanh, one layer, h_0 = 0). x (B, T, K) -> (B,) float64.
    """
    x = torch.as_tensor(x)
    if x.ndim != 3 or x.shape[-1] != model.rnn.input_size:
        raise ValueError(f"x must be (B, T, K) with K = input_size. Expected (B, T, {model.rnn.input_size}), "
                         f"got {tuple(x.shape)}")
    with torch.no_grad():
        hs, _ = model.rnn(x.to(model.rnn.weight_hh_l0.dtype))          # (B, T, H)
        W = model.rnn.weight_hh_l0.double()                            # (H, H)
        P = torch.eye(W.shape[0], dtype=torch.float64).expand(x.shape[0], -1, -1)
        for t in range(x.shape[1]):                                    # P <- J_t P, J_t = diag(1 - h_t^2) W
            P = (1 - hs[:, t].double() ** 2)[:, :, None] * (W @ P)
        return torch.linalg.matrix_norm(P, ord=2).numpy()


def logging_gain(model, batches):
    """-> (batches', gains): batches'(step) first appends median recurrent_gain(model, x) of that step's batch
    to the list `gains`, then returns the batch. Pass batches' to training.train to watch the gain at every step.
    """
    gains = []

    def watched(step):
        x, y = batches(step)
        gains.append(float(np.median(recurrent_gain(model, x))))
        return x, y
    return watched, gains


# ----------------------------------------------------------------------------- Adam's per-parameter step sizes

def adam_effective_lr(optimizer):
    """Per-parameter step multiplier of a torch Adam after >= 1 step: lr / (sqrt(v_hat) + eps). -> (N,) float64.

    Adam's update is θ -= [lr / (sqrt(v_hat) + eps)] · m_hat: this bracket is the learning rate each parameter
    actually gets (SGD gives every parameter the same lr). Parameters in optimizer order, flattened.
    """
    if not isinstance(optimizer, torch.optim.Adam):
        raise ValueError(f"optimizer must be a torch.optim.Adam. Expected Adam, got {type(optimizer).__name__}")
    out = []
    for group in optimizer.param_groups:
        (_, beta2), eps, lr = group["betas"], group["eps"], group["lr"]
        for p in group["params"]:
            state = optimizer.state.get(p)
            if not state:
                raise ValueError("optimizer must have taken a step. Expected a state per parameter, got none")
            v_hat = state["exp_avg_sq"].detach().double() / (1 - beta2 ** float(state["step"]))
            out.append((lr / (v_hat.sqrt() + eps)).flatten().numpy())
    return np.concatenate(out)
