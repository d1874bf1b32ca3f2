"""helpers.remedies: the torch cores against torch.nn, the numpy Jacobians against autograd, batch norm's
statistics against nn.BatchNorm1d, and safe extremes of the panel's computation."""
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers import remedies as R
from helpers import tasks

T, B, H = 7, 5, 6


def batch(n=B, t=T, seed=0):
    return torch.from_numpy(tasks.adding_problem(n, t, seed)[0]).double()  # (n, t, 2)


# ----------------------------------------------------------------------------- the torch cores

@pytest.mark.parametrize("remedy,nonlinearity", [("tanh", "tanh"), ("relu", "relu"), ("irnn", "relu")])
def test_rnn_cores_are_torch_rnn(remedy, nonlinearity):
    model = R.make_model(remedy, H, seed=1).double()
    ref = torch.nn.RNN(2, H, nonlinearity=nonlinearity, batch_first=True).double()
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(ref, name + "_l0").copy_(getattr(model.cell, name))
    x = batch()
    ours = torch.stack(model.states(x), dim=1)  # (B, T, H)
    np.testing.assert_allclose(ours.detach(), ref(x)[0].detach(), rtol=0, atol=1e-12)


def test_lstm_core_is_torch_lstm_and_forget_bias_lands_on_f():
    model = R.make_model("lstm", H, seed=2, forget_bias=1.5).double()
    plain = R.make_model("lstm", H, seed=2).double()
    diff = (model.cell.bias_hh - plain.cell.bias_hh).detach().numpy()
    np.testing.assert_allclose(diff, np.r_[np.zeros(H), np.full(H, 1.5), np.zeros(2 * H)], atol=1e-12)
    ref = torch.nn.LSTM(2, H, batch_first=True).double()
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(ref, name + "_l0").copy_(getattr(model.cell, name))
    x = batch()
    ours = torch.stack([s[0] for s in model.states(x)], dim=1)
    np.testing.assert_allclose(ours.detach(), ref(x)[0].detach(), rtol=0, atol=1e-12)


def test_irnn_init_and_shared_weights_across_remedies():
    irnn = R.make_model("irnn", H, seed=3)
    assert torch.equal(irnn.cell.weight_hh, torch.eye(H))
    assert not irnn.cell.bias_ih.any() and not irnn.cell.bias_hh.any()
    tanh, ln, bn = (R.make_model(r, H, seed=3) for r in ("tanh", "layernorm", "batchnorm"))
    for m in (ln, bn):  # same seed -> same W_ih, W_hh as the plain tanh RNN
        assert torch.equal(m.cell.weight_ih, tanh.cell.weight_ih) and torch.equal(m.cell.weight_hh, tanh.cell.weight_hh)
    k = 1 / np.sqrt(H)
    assert float(tanh.cell.weight_hh.detach().abs().max()) <= k


def test_layernorm_core_matches_its_formula():
    model = R.make_model("layernorm", H, seed=4).double()
    x, h = batch(), torch.zeros(B, H, dtype=torch.float64)
    for t in range(T):
        a = x[:, t] @ model.cell.weight_ih.T + h @ model.cell.weight_hh.T
        mu, var = a.mean(1, keepdim=True), a.var(1, unbiased=False, keepdim=True)
        h = torch.tanh((a - mu) / torch.sqrt(var + 1e-5))  # gain 1, bias 0 at init
    np.testing.assert_allclose(model.states(x)[-1].detach(), h.detach(), atol=1e-12)


# ----------------------------------------------------------------------------- batch norm per step / shared

def test_step_batchnorm_matches_batchnorm1d_per_step_and_shared():
    torch.manual_seed(0)
    a = [torch.randn(8, H, dtype=torch.float64) * (t + 1) + t for t in range(4)]  # statistics drift with t
    bn = R.StepBatchNorm(H, max_len=4, gamma=0.3).double()
    per_step = [torch.nn.BatchNorm1d(H, momentum=0.1).double() for _ in a]
    shared = torch.nn.BatchNorm1d(H, momentum=0.1).double()
    for _ in range(3):  # three training batches
        for t, at in enumerate(a):
            out = bn(at, t)
            np.testing.assert_allclose(out.detach(), 0.3 * per_step[t](at).detach(), atol=1e-12)
            shared(at)
    for t in range(4):
        np.testing.assert_allclose(bn.running_mean[t], per_step[t].running_mean, atol=1e-12)
        np.testing.assert_allclose(bn.running_var[t], per_step[t].running_var, atol=1e-12)
    np.testing.assert_allclose(bn.shared_mean[0], shared.running_mean, atol=1e-12)
    np.testing.assert_allclose(bn.shared_var[0], shared.running_var, atol=1e-12)
    bn.eval()
    shared.eval()
    bn.stats = "shared"
    np.testing.assert_allclose(bn(a[0], 0).detach(), 0.3 * shared(a[0]).detach(), atol=1e-12)
    bn.stats = "per_step"
    last = per_step[3].eval()  # t >= max_len reuses the last slot
    np.testing.assert_allclose(bn(a[2], 9).detach(), 0.3 * last(a[2]).detach(), atol=1e-12)


def test_population_statistics_make_eval_match_training_mode():
    model = R.make_model("batchnorm", H, seed=5, max_len=T).double()
    x = batch(n=64)
    with torch.no_grad():
        train_mode = model.train()(x)  # batch statistics (this pass also moves the running averages) ...
    R.set_population_statistics(model, x)  # ... which are then replaced by x's statistics per step
    with torch.no_grad():
        per_step = model.eval()(x)
        shared = model.set_bn_stats("shared")(x)
    # the only difference left: unbiased (stored) vs biased (batch) variance, a factor 64/63
    assert float((per_step - train_mode).abs().max()) < 2e-2
    assert float((shared - train_mode).abs().max()) > 5 * float((per_step - train_mode).abs().max())
    stats = model.norm_h
    np.testing.assert_allclose(stats.shared_var[0], stats.running_var[:T].mean(0), atol=1e-12)
    assert float(stats.running_var[0].max()) == 0.0  # W_hh h_0 = 0: zero variance at the first step


def test_batchnorm_validation():
    model = R.make_model("batchnorm", H, seed=0)
    with pytest.raises(ValueError, match="batch of >= 2"):
        model(torch.zeros(1, 3, 2))
    with pytest.raises(ValueError, match="stats must be one of"):
        model.set_bn_stats("global")
    with pytest.raises(ValueError, match="needs remedy 'batchnorm'"):
        R.make_model("tanh").set_bn_stats("shared")
    with pytest.raises(ValueError, match="gamma must be a finite number > 0"):
        R.make_model("batchnorm", gamma=0.0)
    with pytest.raises(ValueError, match="remedy must be one of"):
        R.make_model("gru")
    with pytest.raises(ValueError, match=r"x must be \(B, T, I\)"):
        R.make_model("tanh")(torch.zeros(3, 2))


# ----------------------------------------------------------------------------- gradient flow: numpy vs autograd

def torch_jacobian_norms(model, x):
    """||dh_T/ds_k||_F / sqrt(H) for k = 1..T by torch.func.jacrev, one sequence x (1, T, I), eval mode."""
    model = model.eval()
    states = model.states(x)

    def h_T_from(flat, k):
        s = (flat[:H][None], flat[H:][None]) if model.remedy == "lstm" else flat[None]
        for t in range(k, x.shape[1]):
            s = model.step(x[:, t], s, t)
        return (s[0] if model.remedy == "lstm" else s)[0]

    out = []
    for k in range(1, x.shape[1] + 1):
        s = states[k - 1]
        flat = torch.cat([s[0][0], s[1][0]]) if model.remedy == "lstm" else s[0]
        J = torch.func.jacrev(lambda f, k=k: h_T_from(f, k))(flat.detach())
        if k == x.shape[1] and model.remedy == "lstm":
            J[:, H:] = 0.0  # c_T does not reach the loss except through h_T, which is s_T itself
        out.append(float(torch.linalg.norm(J.detach())) / np.sqrt(H))
    return np.array(out)


@pytest.mark.parametrize("remedy", ["tanh", "relu", "irnn", "layernorm", "lstm"])
def test_numpy_jacobians_match_autograd(remedy):
    model = R.make_model(remedy, H, seed=6, forget_bias=0.7 if remedy == "lstm" else 0.0).double()
    with torch.no_grad():
        model.cell.weight_hh.mul_(1.7)  # away from the init: both signs of every ReLU pre-activation occur
        if remedy == "layernorm":
            model.norm.weight.uniform_(0.5, 1.5)
            model.norm.bias.uniform_(-0.3, 0.3)
    x = batch(n=1, t=9, seed=7)
    ours = 10.0 ** R.jacobian_log10_norms(remedy, x[0].numpy(), R.params_from_model(model))
    np.testing.assert_allclose(ours, torch_jacobian_norms(model, x), rtol=1e-9, atol=1e-300)


def test_numpy_batchnorm_jacobian_matches_autograd_with_the_same_statistics():
    model = R.make_model("batchnorm", H, seed=8, max_len=9, gamma=0.4).double()
    x = batch(n=16, t=9, seed=9)
    with torch.no_grad():  # population statistics = this batch's biased statistics, as the numpy code uses
        model.train()
        for n in (model.norm_h, model.norm_x):
            n.momentum = 1.0
        model.states(x)
        for n in (model.norm_h, model.norm_x):
            n.running_var.mul_(15 / 16)
    ours = 10.0 ** R.jacobian_log10_norms("batchnorm", x.transpose(0, 1).numpy(), R.params_from_model(model))
    ref = torch_jacobian_norms(model, x[:1])
    np.testing.assert_allclose(ours[1:], ref[1:], rtol=1e-7)  # k = 1: W_hh h_0 has zero variance, eps-dominated


@pytest.mark.parametrize("remedy", ["tanh", "irnn", "layernorm", "lstm"])
def test_state_grad_norms_equal_the_jacobian_norm_with_a_basis_of_directions(remedy):
    model = R.make_model(remedy, H, seed=10).double()
    x = batch(n=1, t=8, seed=11).repeat(H, 1, 1)  # one sequence, H copies, direction e_b for copy b
    grads = R.state_grad_norms(model, x, directions=np.eye(H))
    ours = 10.0 ** R.jacobian_log10_norms(remedy, x[0].numpy(), R.params_from_model(model))
    np.testing.assert_allclose(grads, ours, rtol=1e-9)  # RMS of ||J^T e_b|| over b = ||J||_F / sqrt(H)


def test_state_grad_norms_leave_the_model_unchanged():
    model = R.make_model("batchnorm", H, seed=12, max_len=T)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    g = R.state_grad_norms(model, batch(n=8))
    assert g.shape == (T,) and g[-1] == pytest.approx(1.0) and np.all(np.isfinite(g))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


# ----------------------------------------------------------------------------- the claims the lesson makes

def test_default_init_vanishes_identity_init_does_not():
    rate = {r: R.flow_experiment(r, T=100)["rate"] for r in R.REMEDIES}
    assert rate["tanh"] < -0.1 and rate["relu"] < rate["tanh"] and rate["lstm"] < -0.1
    assert abs(rate["irnn"]) < 0.01 and abs(rate["layernorm"]) < 0.02
    assert R.flow_experiment("irnn", T=100, weight_scale=1.1)["rate"] > 0.03  # explodes
    assert R.flow_experiment("lstm", T=100, forget_bias=3.0)["rate"] > -0.01


@pytest.mark.parametrize("remedy", ["layernorm", "batchnorm"])
def test_normalisation_makes_the_flow_independent_of_the_weight_scale(remedy):
    a, b = (R.flow_experiment(remedy, T=60, weight_scale=s)["log10_norm"] for s in (0.5, 2.0))
    tanh = [R.flow_experiment("tanh", T=60, weight_scale=s)["log10_norm"][0] for s in (0.5, 2.0)]
    assert abs(a[0] - b[0]) < 3 < abs(tanh[0] - tanh[1])


def test_forget_gates_and_training_helpers():
    model = R.make_model("lstm", H, seed=13)
    f = R.forget_gates(model, batch(n=4).float())
    assert f.shape == (T, 4, H) and np.all((f > 0) & (f < 1)) and abs(f.mean() - 0.5) < 0.1
    b1, b2 = R.adding_batches(T, 3, seed=1), R.adding_batches(T, 3, seed=1)
    x1, y1 = b1(0)
    assert x1.shape == (3, T, 2) and x1.dtype == torch.float32 and torch.equal(x1, b2(0)[0])
    model.train()
    assert R.evaluate(model, x1, y1) == pytest.approx(float(F.mse_loss(model(x1), y1).detach()), rel=1e-6)
    assert model.training
    with pytest.raises(ValueError, match="remedy 'lstm'"):
        R.forget_gates(R.make_model("tanh"), x1)


# ----------------------------------------------------------------------------- the panel's computation

@pytest.mark.parametrize("remedy", R.REMEDIES)
@pytest.mark.parametrize("T_,scale,gamma,fb", [(10, 0.25, 0.01, 0.0), (300, 2.5, 2.0, 5.0), (2, 1.0, 0.1, 0.0)])
def test_flow_experiment_extremes_are_finite_without_warnings(remedy, T_, scale, gamma, fb):
    for gains in (dict(gamma=gamma), dict(gamma=0.1, gamma_x=gamma)):  # both gains moved, or the input gain alone
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            r = R.flow_experiment(remedy, T=T_, weight_scale=scale, forget_bias=fb, **gains)
        assert r["log10_norm"].shape == r["distance"].shape == (T_,)
        assert r["log10_norm"][-1] == 0.0 and r["distance"][-1] == 0
        assert not np.isnan(r["log10_norm"]).any() and not np.isposinf(r["log10_norm"]).any()


def test_flow_experiment_validation():
    with pytest.raises(ValueError, match="weight_scale must be a finite number > 0"):
        R.flow_experiment("tanh", weight_scale=0.0)
    with pytest.raises(ValueError, match="T must be an int >= 2"):
        R.flow_experiment("tanh", T=1)
    with pytest.raises(ValueError, match="remedy must be one of"):
        R.flow_experiment("gru")
    params = R.init_params("tanh", H)
    with pytest.raises(ValueError, match=r"x must be \(T, I\)"):
        R.jacobian_log10_norms("tanh", np.zeros((4, 1, 2)), params)
    with pytest.raises(ValueError, match="Expected B >= 2"):
        R.jacobian_log10_norms("batchnorm", np.zeros((4, 1, 2)), R.init_params("batchnorm", H))


# ----------------------------------------------------------------------------- fused forward, per-step W_hh gradients

@pytest.mark.parametrize("remedy", ["tanh", "relu", "irnn", "lstm"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_forward_equals_the_step_loop(remedy, dtype):
    model = R.make_model(remedy, H, seed=14).to(dtype)
    with torch.no_grad():
        model.cell.weight_hh.mul_(1.3)  # the fused module must see in-place changes of the cell's weights
    x = batch(seed=15).to(dtype)
    s_T = model.states(x)[-1]
    loop = model.head(s_T[0] if remedy == "lstm" else s_T).squeeze(-1)
    fused = model(x)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    np.testing.assert_allclose(fused.detach(), loop.detach(), rtol=0, atol=tol)
    g_fused = torch.autograd.grad(fused.sum(), list(model.parameters()))
    g_loop = torch.autograd.grad(loop.sum(), list(model.parameters()))
    for a, b in zip(g_fused, g_loop):
        np.testing.assert_allclose(a, b, rtol=0, atol=10 * tol)


def test_fused_module_leaves_the_init_and_the_global_rng_alone():
    model = R.make_model("lstm", H, seed=16)
    torch.manual_seed(16)
    cell, head = torch.nn.LSTMCell(2, H), torch.nn.Linear(H, 1)
    after_reference = torch.rand(3)
    R.make_model("lstm", H, seed=16)
    assert torch.equal(torch.rand(3), after_reference)
    assert torch.equal(model.cell.weight_hh, cell.weight_hh) and torch.equal(model.head.weight, head.weight)
    assert len(list(model.parameters())) == 6  # the fused module owns no parameters of the model


@pytest.mark.parametrize("remedy", R.REMEDIES)
def test_weight_hh_grads_by_step_sum_to_the_gradient(remedy):
    from helpers import training
    model = R.make_model(remedy, H, seed=17, max_len=T).double()
    x, y = tasks.adding_problem(B, T, 18)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    G, other = R.weight_hh_grads_by_step(model, x, y)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert G.shape == (T,) + tuple(model.cell.weight_hh.shape) and not G[0].any()  # h_0 = 0: step 1 adds nothing
    model.train()
    R.mse_loss(model, torch.from_numpy(x).double(), torch.from_numpy(y).double()).backward()
    np.testing.assert_allclose(G.sum(0), model.cell.weight_hh.grad, rtol=1e-10, atol=1e-14)
    total = np.sqrt(other ** 2 + np.sum(G.sum(0) ** 2))
    assert total == pytest.approx(training.grad_norm(model.parameters()), rel=1e-10)


def test_weight_hh_grads_by_step_validation():
    with pytest.raises(ValueError, match="model must be a RemedyRNN"):
        R.weight_hh_grads_by_step(torch.nn.RNN(2, 3), np.zeros((2, 3, 2)), np.zeros(2))
    with pytest.raises(ValueError, match=r"y \(B,\)"):
        R.weight_hh_grads_by_step(R.make_model("tanh", H), np.zeros((2, 3, 2)), np.zeros(3))


# ----------------------------------------------------------------------------- init variants and batch norm's two gains

def test_orthogonal_init():
    default, orth = R.init_params("lstm", H, rng=np.random.default_rng(3)), \
        R.init_params("lstm", H, rng=np.random.default_rng(3), init="orthogonal")
    for name in ("weight_ih", "bias_ih", "bias_hh"):  # drawn first: unchanged by the orthogonal draw
        np.testing.assert_array_equal(default[name], orth[name])
    for block in np.split(orth["weight_hh"], 4):
        np.testing.assert_allclose(block.T @ block, np.eye(H), atol=1e-12)
    irnn = R.init_params("irnn", H, init="orthogonal", weight_scale=0.9)
    np.testing.assert_array_equal(irnn["weight_hh"], 0.9 * np.eye(H))
    with pytest.raises(ValueError, match="init must be one of"):
        R.flow_experiment("tanh", init="identity")


def test_batchnorm_gains_gamma_x_defaults_to_gamma():
    a = R.flow_experiment("batchnorm", T=30, gamma=0.2)["log10_norm"]
    b = R.flow_experiment("batchnorm", T=30, gamma=0.2, gamma_x=0.2)["log10_norm"]
    np.testing.assert_array_equal(a, b)
    p = R.init_params("batchnorm", H, gamma=0.1, gamma_x=0.3)
    assert np.all(p["gamma_h"] == 0.1) and np.all(p["gamma_x"] == 0.3)
    with pytest.raises(ValueError, match="gamma_x must be a finite number > 0"):
        R.init_params("batchnorm", H, gamma_x=-1.0)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_batchnorm_rate_is_set_by_the_share_of_fresh_input(seed):
    rates = [R.flow_experiment("batchnorm", T=100, gamma=0.1, gamma_x=g, seed=seed)["rate"] for g in (0.2, 0.1, 0.05, 0.02)]
    assert np.all(np.diff(rates) > 0) and rates[0] < -0.03 and abs(rates[-1]) < 0.01
    same_ratio = [R.flow_experiment("batchnorm", T=100, gamma=g, gamma_x=g, seed=seed)["rate"] for g in (0.05, 0.2)]
    assert abs(same_ratio[0] - same_ratio[1]) < 0.01


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_the_init_is_the_fix_not_the_activation(seed):
    far = lambda **kw: R.flow_experiment(T=100, seed=seed, **kw)["log10_norm"][0]  # noqa: E731
    assert far(remedy="tanh") < -15 < -6 < far(remedy="tanh", init="orthogonal")
    assert far(remedy="relu", init="orthogonal") < -8 and far(remedy="irnn") > -1
