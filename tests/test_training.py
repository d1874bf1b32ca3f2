"""helpers.training: clipping does what it says (generator trap included), and train() is deterministic and learns."""
import math

import numpy as np
import pytest
import torch

from helpers import tasks, training


def model_with_grads(seed=0, scale=100.0, dtype=torch.float32):
    """A small MLP whose .grad holds the gradient of a random loss, scaled so its norm is well above 1."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2)).to(dtype)
    (scale * model(torch.randn(7, 3, dtype=dtype)).pow(2).sum()).backward()
    return model


def grads_of(model):
    return [p.grad.clone() for p in model.parameters()]


def cosine(a, b):
    a, b = torch.cat([g.flatten() for g in a]), torch.cat([g.flatten() for g in b])
    return float(a @ b / (a.norm() * b.norm()))


# ----------------------------------------------------------------------------- clipping

@pytest.mark.parametrize("clip", [("norm", 1.0), ("value", 0.5)])
def test_clipping_a_generator_really_clips(clip):
    """model.parameters() is a one-shot generator: the gradients must still end up clipped."""
    model = model_with_grads()
    kind, threshold = clip
    assert training.grad_norm(model.parameters()) > 10 * threshold          # precondition: clipping has work to do
    before, after = training.clip_gradients(model.parameters(), clip)
    measured = training.grad_norm(list(model.parameters()))
    assert before > 10 * threshold and after == pytest.approx(measured, rel=1e-12)
    if kind == "norm":
        assert measured <= threshold * (1 + 1e-6)
    else:
        assert max(float(p.grad.abs().max()) for p in model.parameters()) <= threshold


def test_the_generator_trap_is_real():
    """What the test above guards against: measure with one pass, clip with a second, and nothing is clipped."""
    def naive_clip_norm(parameters, max_norm):
        norm = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in parameters))  # exhausts a generator
        for p in parameters:                                                     # ... so this loop never runs
            p.grad.mul_(min(1.0, max_norm / norm))

    model = model_with_grads()
    before = training.grad_norm(model.parameters())
    naive_clip_norm(model.parameters(), 1.0)
    assert training.grad_norm(model.parameters()) == before > 10


def test_norm_clipping_keeps_direction_value_clipping_can_turn_it():
    model = model_with_grads(dtype=torch.float64)
    g = grads_of(model)
    before, after = training.clip_gradients(model.parameters(), ("norm", 0.1))
    assert after == pytest.approx(0.1, rel=1e-12) and before > 1
    assert abs(cosine(g, grads_of(model)) - 1.0) < 1e-12

    w = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    w.grad = torch.tensor([10.0, 1.0], dtype=torch.float64)   # one coordinate large, one small
    training.clip_gradients([w], ("value", 1.0))              # -> [1, 1]: the small one now weighs as much
    turned = cosine([torch.tensor([10.0, 1.0], dtype=torch.float64)], [w.grad])
    assert turned == pytest.approx(11 / (math.sqrt(101) * math.sqrt(2)), rel=1e-12) and turned < 0.8


@pytest.mark.parametrize("max_norm", [0.5, 1e6])  # clipped, and left alone
def test_norm_clipping_matches_torch(max_norm):
    ours, ref = model_with_grads(), model_with_grads()
    before, after = training.clip_gradients(ours.parameters(), ("norm", max_norm))
    torch_before = float(torch.nn.utils.clip_grad_norm_(ref.parameters(), max_norm))
    assert before == pytest.approx(torch_before, rel=1e-6)
    assert after == pytest.approx(min(max_norm, before), rel=1e-6)
    for a, b in zip(grads_of(ours), grads_of(ref)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=0)  # torch divides by norm + 1e-6
    if max_norm > before:
        assert after == before and all(torch.equal(a, b) for a, b in zip(grads_of(ours), grads_of(model_with_grads())))


def test_value_clipping_matches_torch_and_grad_norm_is_the_total_l2_norm():
    ours, ref = model_with_grads(), model_with_grads()
    expected = math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in ours.parameters()))
    assert training.grad_norm(ours.parameters()) == pytest.approx(expected, rel=1e-12)
    training.clip_gradients(ours.parameters(), ("value", 0.5))
    torch.nn.utils.clip_grad_value_(ref.parameters(), 0.5)
    assert all(torch.equal(a, b) for a, b in zip(grads_of(ours), grads_of(ref)))
    ours[0].weight.grad = None                                        # a parameter without a gradient is skipped
    rest = [p for p in ours.parameters() if p.grad is not None]
    assert training.grad_norm(ours.parameters()) == training.grad_norm(rest) > 0


# ----------------------------------------------------------------------------- train

class Net(torch.nn.Module):
    """GRU read-out of the last step: x (B, T, I) -> (B,)."""

    def __init__(self, input_size=2, hidden_size=16):
        super().__init__()
        self.rnn = torch.nn.GRU(input_size, hidden_size, batch_first=True)
        self.head = torch.nn.Linear(hidden_size, 1)

    def forward(self, x):
        return self.head(self.rnn(x)[0][:, -1]).squeeze(-1)


def mse(model, x, y):
    return (model(x) - y).pow(2).mean()


def adding_batches(step, B=64, T=10):
    """A fresh adding-problem batch per step, seeded by the step: (B, T, 2), (B,)."""
    return tuple(torch.from_numpy(a) for a in tasks.adding_problem(B, T, rng=step))


def torch_random_batches(step):
    """Drawn from torch's global RNG, so only train()'s seed makes them reproducible."""
    x = torch.rand(8, 5, 2)
    return x, x[:, :, 0].sum(1)


def fresh_run(seed=0, batches=torch_random_batches, **kw):
    training.set_seed(0)
    kw = {"steps": 20, "optimizer": "adam", "lr": 1e-2, "clip": ("norm", 1.0), **kw}
    return training.train(Net(hidden_size=4), batches, mse, seed=seed, **kw)


@pytest.mark.parametrize("optimizer", list(training.OPTIMIZERS))
def test_same_seed_gives_bit_identical_history(optimizer):
    a, b, c = fresh_run(optimizer=optimizer), fresh_run(optimizer=optimizer), fresh_run(seed=1, optimizer=optimizer)
    assert np.array_equal(a.loss, b.loss) and np.array_equal(a.grad_norm, b.grad_norm)
    assert np.array_equal(a.grad_norm_clipped, b.grad_norm_clipped)
    assert not np.array_equal(a.loss, c.loss)  # the seed reaches the batches drawn with torch


def test_learns_the_adding_problem_below_the_one_sixth_baseline():
    training.set_seed(0)
    model = Net()
    h = training.train(model, adding_batches, mse, steps=200, optimizer="adam", lr=1e-2, clip=("norm", 1.0))
    assert len(h.loss) == 200 and not h.diverged and np.array_equal(h.step, np.arange(200))
    x, y = (torch.from_numpy(a) for a in tasks.adding_problem(2000, 10, rng=10_000))  # held out
    with torch.no_grad():
        test_mse = float(mse(model, x, y))
    assert h.loss[0] > 1 / 6 / 2                                 # it starts near the baseline...
    assert test_mse < (1 / 6) / 10 and h.final_loss < (1 / 6) / 10  # ...and ends an order of magnitude below
    assert np.all(h.grad_norm_clipped <= 1.0 + 1e-6) and np.all(h.grad_norm_clipped <= h.grad_norm + 1e-12)


def test_the_step_uses_the_clipped_gradient():
    """SGD after norm clipping moves the parameters by exactly lr * max_norm."""
    training.set_seed(0)
    model = Net(hidden_size=4)
    w0 = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    h = training.train(model, lambda step: (torch.ones(4, 5, 2), torch.full((4,), 100.0)), mse,
                       steps=1, optimizer="sgd", lr=0.1, clip=("norm", 0.5))
    w1 = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert h.grad_norm[0] > 5 and h.grad_norm_clipped[0] == pytest.approx(0.5, rel=1e-6)
    assert float((w1 - w0).norm()) == pytest.approx(0.1 * 0.5, rel=1e-5)


def test_divergence_is_recorded_not_raised():
    """(w x + b)^2 with x = 1 and SGD at lr 100: s = w + b is multiplied by 1 - 4 lr each step, until inf."""
    def run(clip):
        torch.manual_seed(0)
        model = torch.nn.Linear(1, 1)
        batch = (torch.ones(1, 1), torch.zeros(1, 1))
        return model, training.train(model, lambda step: batch, lambda m, x, y: (m(x) - y).pow(2).mean(),
                                     steps=50, optimizer="sgd", lr=100.0, clip=clip)

    model, h = run(None)
    assert h.diverged and len(h.loss) < 50 and not math.isfinite(h.final_loss)
    assert np.all(np.isfinite(h.loss[:-1])) and np.isnan(h.grad_norm[-1])  # no backward on the bad step
    assert all(torch.isfinite(p).all() for p in model.parameters())        # the last weights are kept
    _, h = run(("norm", 1.0))                                               # clipping bounds each step
    assert not h.diverged and len(h.loss) == 50 and np.all(np.isfinite(h.loss))


def test_log_every_keeps_every_kth_step_and_the_last():
    full, sparse = fresh_run(steps=10), fresh_run(steps=10, log_every=4)
    np.testing.assert_array_equal(sparse.step, [0, 4, 8, 9])
    np.testing.assert_array_equal(sparse.loss, full.loss[[0, 4, 8, 9]])
    assert sparse.final_loss == full.final_loss


def test_iterable_batches_equal_callable_batches():
    data = [adding_batches(step, B=8) for step in range(6)]
    a = fresh_run(batches=lambda step: data[step], steps=6)
    b = fresh_run(batches=data, steps=6)
    np.testing.assert_array_equal(a.loss, b.loss)
    with pytest.raises(ValueError, match="Expected 6, got 3"):
        fresh_run(batches=iter(data[:3]), steps=6)


# ----------------------------------------------------------------------------- bad input

def _train(**kw):
    args = {"steps": 2, "optimizer": "sgd", "lr": 0.1, **kw}
    return training.train(Net(hidden_size=2), adding_batches, mse, **args)


BAD = [
    ("unknown optimizer", lambda: _train(optimizer="lbfgs"), "got 'lbfgs'"),
    ("steps 0", lambda: _train(steps=0), "Expected >= 1, got 0"),
    ("lr 0", lambda: _train(lr=0), "Expected > 0, got 0"),
    ("lr negative", lambda: _train(lr=-1e-3), "got -0.001"),
    ("lr nan", lambda: _train(lr=float("nan")), "got nan"),
    ("log_every 0", lambda: _train(log_every=0), "Expected >= 1, got 0"),
    ("clip kind", lambda: _train(clip=("l1", 1.0)), "got ('l1', 1.0)"),
    ("clip threshold", lambda: _train(clip=("norm", 0.0)), "got ('norm', 0.0)"),
    ("clip not a pair", lambda: _train(clip=1.0), "got 1.0"),
    ("clip inf", lambda: training.clip_gradients([], ("value", float("inf"))), "got ('value', inf)"),
    ("batches not iterable", lambda: training.train(Net(), 5, mse, steps=1, lr=0.1), "got int"),
    ("loss not scalar", lambda: training.train(Net(), adding_batches, lambda m, x, y: (m(x) - y) ** 2,
                                               steps=1, lr=0.1), "Expected shape (), got (64,)"),
    ("seed negative", lambda: training.set_seed(-1), "Expected >= 0, got -1"),
]


@pytest.mark.parametrize("name,call,message", BAD, ids=[b[0] for b in BAD])
def test_bad_input_raises_clear_value_error(name, call, message):
    with pytest.raises(ValueError, match="Expected") as e:
        call()
    assert message in str(e.value)


def test_history_carries_the_optimizer_it_stepped():
    training.set_seed(0)
    model = Net(hidden_size=4)
    h = training.train(model, adding_batches, mse, steps=2, optimizer="adam", lr=1e-2)
    assert isinstance(h.optimizer, torch.optim.Adam)
    assert {id(p) for p in h.optimizer.param_groups[0]["params"]} == {id(p) for p in model.parameters()}
    assert all(h.optimizer.state[p]["step"] == 2 for p in model.parameters())
