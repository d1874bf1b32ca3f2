"""helpers.cliff: the one-unit cliff against torch autograd, descent and clipping rules, and the RNN tools."""
import math

import numpy as np
import pytest
import torch

from helpers import cells, cliff, flow, training
from helpers.gradcheck import rel_error

POINTS = [(4.0, -3.0), (4.3292, -2.2), (4.355, -2.2), (2.0, -0.5), (6.0, 1.0), (-1.0, 0.3)]  # on and off the wall


def torch_loss(w, b, T=50, h0=0.5, target=0.7):
    h = torch.tensor(h0, dtype=torch.float64)
    for _ in range(T):
        h = w * torch.sigmoid(h) + b
    return (torch.sigmoid(h) - target) ** 2


# ----------------------------------------------------------------------------- the one-unit model

@pytest.mark.parametrize("w, b", POINTS)
def test_loss_and_grad_match_autograd(w, b):
    wt = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    bt = torch.tensor(b, dtype=torch.float64, requires_grad=True)
    loss = torch_loss(wt, bt)
    loss.backward()
    E, dw, db = cliff.loss_and_grad(w, b)
    assert rel_error(E, loss.item()) < 1e-12
    assert rel_error([dw, db], [wt.grad.item(), bt.grad.item()]) < 1e-10


def test_vectorised_and_scalar_paths_agree():
    w, b = np.array(POINTS).T
    E, dw, db = cliff.loss_and_grad(w, b)
    scalar = np.array([cliff._loss_grad_scalar(wi, bi, 50, 0.5, 0.7) for wi, bi in POINTS])
    assert rel_error(np.stack([E, dw, db], 1), scalar) < 1e-12


def test_broadcasting_over_a_grid():
    W, B = np.meshgrid(np.linspace(0, 8, 7), np.linspace(-5, 3, 5))
    E, dw, db = cliff.loss_and_grad(W, B)
    assert E.shape == dw.shape == db.shape == (5, 7)
    assert cliff.forward(W, B, T=12).shape == (13, 5, 7)
    assert rel_error(E[2, 3], cliff.loss_and_grad(W[2, 3], B[2, 3])[0]) < 1e-14


@pytest.mark.parametrize("w, b", POINTS[:3])
def test_state_jacobians_match_autograd(w, b):
    T = 50
    xs = cliff.forward(w, b, T)
    ours = cliff.state_jacobians(w, b, T)
    assert ours.shape == (T + 1,) and ours[T] == 1.0
    for k in (0, 10, 40, 49):
        xk = torch.tensor(xs[k], dtype=torch.float64, requires_grad=True)
        x = xk
        for _ in range(T - k):
            x = w * torch.sigmoid(x) + b
        (dk,) = torch.autograd.grad(x, xk)
        assert rel_error(ours[k], dk.item()) < 1e-10


def test_gradient_is_the_jacobian_weighted_sum():
    """dE/dw = dE/dx_T * sum_k dx_T/dx_k * sigma(x_{k-1}): the BPTT sum written out."""
    w, b = 4.3292, -2.2
    xs, J = cliff.forward(w, b), cliff.state_jacobians(w, b)
    s = cells.sigmoid(xs)
    dE_dxT = 2 * (s[-1] - 0.7) * s[-1] * (1 - s[-1])
    assert rel_error(dE_dxT * np.sum(J[1:] * s[:-1]), cliff.loss_and_grad(w, b)[1]) < 1e-12


def test_the_cliff_is_there():
    """b = -2.2: the loss falls by > 0.2 within 0.02 of w, where |dE/dw| is > 1000x its median."""
    w = np.linspace(0, 8, 80001)
    E, dw, _ = cliff.loss_and_grad(w, -2.2)
    i = int(np.argmax(np.abs(dw)))
    assert 4.3 < w[i] < 4.36 and np.abs(dw[i]) > 1000 * np.median(np.abs(dw))
    near = np.abs(w - w[i]) < 0.01
    assert E[near].max() - E[near].min() > 0.2
    assert np.abs(cliff.state_jacobians(w[i], -2.2)).max() > 10             # the Jacobian product explodes on the wall
    assert np.abs(cliff.state_jacobians(4.0, -2.2)[0]) < 1e-6               # and vanishes off it


@pytest.mark.parametrize("w, n_expected", [(4.0, 1), (4.33, 1), (4.34, 3), (4.5, 3), (4.6, 1), (-3.0, 1), (0.0, 1)])
def test_fixed_points_against_a_dense_scan(w, n_expected):
    """b = -2.2: the high attractor is born between w = 4.33 and 4.34, the low one dies between 4.5 and 4.6."""
    b = -2.2
    h, slope = cliff.fixed_points(w, b)
    grid = np.linspace(-12, 12, 2_400_001)
    f = w * cells.sigmoid(grid) + b - grid
    n_scan = int(np.sum(np.sign(f[:-1]) != np.sign(f[1:])))
    assert len(h) == n_expected == n_scan and np.all(np.diff(h) > 0)
    assert np.abs(w * cells.sigmoid(h) + b - h).max() < 1e-12                 # they are fixed points
    s = cells.sigmoid(h)
    assert rel_error(slope, w * s * (1 - s)) < 1e-14
    if n_expected == 3:                                                          # attractor, boundary, attractor
        assert slope[0] < 1 < slope[1] and slope[2] < 1


def test_fixed_points_birth_of_the_high_attractor():
    """Saddle-node at b = -2.2: w σ'(h) = 1 and h = w σ(h) + b at w_c ≈ 4.3365. One fixed point below, three above."""
    assert len(cliff.fixed_points(4.3364, -2.2)[0]) == 1 and len(cliff.fixed_points(4.3366, -2.2)[0]) == 3
    h, _ = cliff.fixed_points(4.3376, -2.2)                                      # the basin boundary is near h_0 = 0.5
    assert abs(h[1] - 0.5) < 0.01
    w_cross = (0.5 + 2.2) / cells.sigmoid(0.5)                                   # boundary exactly at h_0 = 0.5
    assert abs(cliff.fixed_points(w_cross, -2.2)[0][1] - 0.5) < 1e-9
    for b in (-3.0, 0.0, 1.0):                                                   # w = 4.34 is bistable only near b = -w/2
        assert len(cliff.fixed_points(4.34, b)[0]) == 1
    assert len(cliff.fixed_points(6.0, -3.0)[0]) == 3


@pytest.mark.parametrize("bad", [dict(w=np.nan, b=0.0), dict(w=1.0, b="x"), dict(w=True, b=0.0)])
def test_fixed_points_validates(bad):
    with pytest.raises(ValueError, match="must be"):
        cliff.fixed_points(**bad)


def test_the_wall_sharpens_onto_the_basin_crossing_as_T_grows():
    """The wall (max |dE/dw| at b = -2.2) moves from w ≈ 4.329 (T = 50) towards the w where the basin boundary
    passes h_0 = 0.5, w = 2.7 / σ(0.5) ≈ 4.3376, and gets steeper."""
    w = np.linspace(4.32, 4.34, 20001)
    w_cross = 2.7 / cells.sigmoid(0.5)
    walls, steep = [], []
    for T in (50, 100, 200, 400):
        _, dw, _ = cliff.loss_and_grad(w, -2.2, T=T)
        i = int(np.argmax(np.abs(dw)))
        walls.append(w[i])
        steep.append(abs(dw[i]))
    gaps = np.abs(np.array(walls) - w_cross)
    assert np.all(np.diff(gaps) < 0) and gaps[-1] < 1e-3 and np.all(np.diff(steep) > 0)


@pytest.mark.parametrize("bad", [dict(w=np.nan, b=0.0), dict(w=1.0, b=np.inf), dict(w=1.0, b=0.0, T=0),
                                 dict(w=1.0, b=0.0, h0="a")])
def test_forward_validates(bad):
    with pytest.raises(ValueError, match="must be"):
        cliff.forward(**bad)


# ----------------------------------------------------------------------------- clipping and descent

def test_clip_vector_matches_training_clip_gradients():
    g = np.array([3.0, -0.02, 0.5, -7.0])
    for clip in [None, ("norm", 1.0), ("norm", 100.0), ("value", 0.1)]:
        p = torch.nn.Parameter(torch.zeros(4, dtype=torch.float64))
        p.grad = torch.tensor(g)
        training.clip_gradients([p], clip)
        assert rel_error(cliff.clip_vector(g, clip), p.grad.numpy()) < 1e-15
    assert np.array_equal(g, [3.0, -0.02, 0.5, -7.0])    # the input is not modified
    with pytest.raises(ValueError, match="vector"):
        cliff.clip_vector(np.ones((2, 2)), ("norm", 1.0))
    with pytest.raises(ValueError, match="clip must be"):
        cliff.clip_vector(g, ("norm", -1.0))


def test_norm_clipping_keeps_direction_value_clipping_turns_it():
    g = np.array([30.0, 0.05])
    n, v = cliff.clip_vector(g, ("norm", 0.1)), cliff.clip_vector(g, ("value", 0.1))
    cos = lambda a, b: a @ b / np.linalg.norm(a) / np.linalg.norm(b)  # noqa: E731
    assert abs(cos(g, n) - 1) < 1e-12 and np.linalg.norm(n) == pytest.approx(0.1)
    assert cos(g, v) < 0.95                                             # (0.1, 0.05): turned by ~27 degrees


def test_descend_sgd_is_plain_gradient_descent():
    r = cliff.descend(4.0, -3.0, lr=0.5, steps=20)
    assert r["theta"].shape == (21, 2) and r["loss"].shape == (21,) and r["grad"].shape == (20, 2)
    np.testing.assert_allclose(r["update"], -0.5 * r["grad"], rtol=0, atol=1e-15)
    np.testing.assert_array_equal(r["scale"], 0.5)
    E, dw, db = cliff.loss_and_grad(r["theta"][:-1, 0], r["theta"][:-1, 1])
    assert rel_error(np.stack([dw, db], 1), r["grad"]) < 1e-12 and rel_error(E, r["loss"][:-1]) < 1e-12


@pytest.mark.parametrize("kind", ["norm", "value"])
def test_descend_clips_every_step(kind):
    lr, c = 3.0, 0.1
    r = cliff.descend(4.0, -3.0, lr, 100, (kind, c))
    assert r["grad_norm"].max() > 5 * c                                 # clipping had work to do
    for g, gc in zip(r["grad"], r["clipped"]):
        assert rel_error(gc, cliff.clip_vector(g, (kind, c))) < 1e-14
    step = np.linalg.norm(r["update"], axis=1) if kind == "norm" else np.abs(r["update"]).max(1)
    assert step.max() <= lr * c * (1 + 1e-12)


def test_descend_adam_matches_torch_adam():
    lr, steps = 0.1, 30
    r = cliff.descend(4.0, -3.0, lr, steps, ("norm", 0.1), optimizer="adam")
    theta = torch.tensor([4.0, -3.0], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([theta], lr=lr)
    for k in range(steps):
        opt.zero_grad()
        torch_loss(theta[0], theta[1]).backward()
        training.clip_gradients([theta], ("norm", 0.1))
        opt.step()
        assert rel_error(theta.detach().numpy(), r["theta"][k + 1]) < 1e-9
    v_hat = opt.state[theta]["exp_avg_sq"].numpy() / (1 - 0.999 ** steps)
    assert rel_error(r["scale"][-1], lr / (np.sqrt(v_hat) + 1e-8)) < 1e-9


def test_the_lesson_default_run():
    """From (4, -3) with lr 3: unclipped SGD is thrown onto the plateau, norm clipping reaches the valley."""
    none = cliff.descend(4.0, -3.0, 3.0, 100)
    norm = cliff.descend(4.0, -3.0, 3.0, 100, ("norm", 0.1))
    assert cliff.outcome(none) == "plateau" and none["theta"][-1, 1] > 0.5
    assert cliff.outcome(norm) == "valley"
    assert cliff.outcome(cliff.descend(4.0, -3.0, 0.1, 5)) == "slope"             # 5 small steps: still going down
    value = cliff.descend(4.0, -3.0, 3.0, 100, ("value", 0.1 / math.sqrt(2)))
    tail = value["loss"][-10:]
    assert cliff.outcome(value) == "bouncing" and tail.max() > 10 * tail.min() and tail.max() > 0.1


@pytest.mark.parametrize("bad", [dict(lr=0.0), dict(lr=math.nan), dict(steps=0), dict(optimizer="sgdm"),
                                 dict(clip=("l1", 1.0)), dict(clip=("norm", 0.0)), dict(w0=np.inf)])
def test_descend_validates(bad):
    kw = dict(w0=4.0, b0=-3.0, lr=1.0) | bad
    with pytest.raises(ValueError, match="must be"):
        cliff.descend(**kw)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("clip", [None, ("norm", 0.01), ("value", 2.0)])
@pytest.mark.parametrize("lr", [0.05, 10.0])
def test_descend_extremes_stay_finite(optimizer, clip, lr):
    with np.errstate(all="raise"):
        r = cliff.descend(4.0, -3.0, lr, 100, clip, optimizer)
    assert all(np.all(np.isfinite(v)) for v in r.values())


# ----------------------------------------------------------------------------- the RNN tools

def test_recall_batches_are_reproducible_and_recall_the_first_symbol():
    a, b = cliff.recall_batches(T=7, batch_size=5, seed=3), cliff.recall_batches(T=7, batch_size=5, seed=3)
    (x1, y1), (x2, y2) = a(4), b(4)
    assert x1.shape == (5, 7, 4) and x1.dtype == torch.float32 and y1.dtype == torch.int64
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert torch.equal(x1[:, 0].argmax(-1), y1)
    assert not torch.equal(a(5)[0], x1)
    with pytest.raises(ValueError, match="step must be"):
        a(-1)


def test_recall_float64():
    x32, y32 = cliff.recall_batches(batch_size=3)(2)
    x64, y64 = cliff.recall_batches(batch_size=3, dtype=torch.float64)(2)
    assert x64.dtype == torch.float64 and torch.equal(x64.float(), x32) and torch.equal(y64, y32)
    m32, m64 = cliff.recall_model(seed=1), cliff.recall_model(seed=1, dtype=torch.float64)
    assert all(q.dtype == torch.float64 and torch.equal(p.double(), q) for p, q in zip(m32.parameters(), m64.parameters()))
    assert rel_error(m64(x64).detach().numpy(), m32(x32).detach().double().numpy()) < 1e-5
    with pytest.raises(ValueError, match="dtype must be"):
        cliff.recall_model(dtype=torch.float16)
    with pytest.raises(ValueError, match="dtype must be"):
        cliff.recall_batches(dtype="float64")


def test_recall_model_is_seeded():
    m1, m2 = cliff.recall_model(seed=1), cliff.recall_model(seed=1)
    assert all(torch.equal(p, q) for p, q in zip(m1.parameters(), m2.parameters()))
    x, y = cliff.recall_batches(batch_size=3)(0)
    assert m1(x).shape == (3, 4) and cliff.recall_loss(m1, x, y).ndim == 0


def test_recurrent_gain_matches_flow():
    model = cliff.recall_model(seed=0)
    with torch.no_grad():
        model.rnn.weight_hh_l0.mul_(3.0)
    x, _ = cliff.recall_batches(batch_size=3)(0)
    ours = cliff.recurrent_gain(model, x)
    p = cells.params_from_torch(model.rnn)
    ref = [flow.state_jacobian_norms(x[i].double().numpy()[:, None, :], np.zeros((1, 32)), p, "tanh", ord=2)[0]
           for i in range(3)]
    assert ours.shape == (3,) and rel_error(ours, ref) < 1e-5            # float32 forward vs float64
    with pytest.raises(ValueError, match="x must be"):
        cliff.recurrent_gain(model, x[0])


def test_logging_gain_logs_once_per_step():
    model = cliff.recall_model(seed=0)
    batches, gains = cliff.logging_gain(model, cliff.recall_batches(batch_size=4))
    training.train(model, batches, cliff.recall_loss, steps=5, lr=0.1)
    assert len(gains) == 5 and all(g > 0 for g in gains)


def test_adam_effective_lr_reads_the_optimizer_train_stepped():
    model = cliff.recall_model(seed=0)
    batches = cliff.recall_batches(batch_size=4)
    opt = training.train(model, batches, cliff.recall_loss, steps=3, optimizer="adam", lr=0.01).optimizer
    assert isinstance(opt, torch.optim.Adam)
    eff = cliff.adam_effective_lr(opt)
    assert eff.shape == (sum(p.numel() for p in model.parameters()),)
    p0 = next(iter(model.parameters()))
    v_hat = opt.state[p0]["exp_avg_sq"].double() / (1 - 0.999 ** 3)
    assert rel_error(eff[:p0.numel()], (0.01 / (v_hat.sqrt() + 1e-8)).flatten().numpy()) < 1e-12
    other = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match="Adam"):
        cliff.adam_effective_lr(other)
    with pytest.raises(ValueError, match="taken a step"):
        cliff.adam_effective_lr(torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))]))
