r"""A character-level language model in PyTorch: model, training, evaluation and temperature sampling.

    model = CharRNN(vocab_size=V, hidden_size=128, kind="gru")       # ids (B, T) -> logits (B, T, V)
    history = train_char_model(model, train_ids, steps=300)           # helpers.training.train underneath
    text_ids = sample(model, prompt_ids, n=200, temperature=0.7, seed=0)

The model is Karpathy's char-rnn (2015) in its smallest form: an embedding, one recurrent layer, a linear
read-out, trained by teacher forcing (the input at step t is the true character t, the target is t + 1):

    e_t = E[x_t]            (B, T, E)      nn.Embedding: a learned row per character (= one-hot @ E)
    h_t = cell(e_t, h_{t-1}) (B, T, H)     nn.GRU / nn.LSTM / nn.RNN, batch_first=True
    z_t = W h_t + b          (B, T, V)     nn.Linear on the last axis (Keras: Dense, no TimeDistributed needed)
    loss = mean_t -log softmax(z_t)[x_{t+1}]   nats per character

Sampling with temperature tau (Graves 2013; Karpathy 2015):  p_i = exp(z_i / tau) / sum_j exp(z_j / tau).
tau = 1 is the model's own distribution; tau -> 0 tends to argmax (greedy); tau -> inf tends to uniform.
Dividing by tau never changes the ranking of the characters, only how peaked the distribution is.

BigramModel has the same interface (ids -> logits, state) and is built from counts in numpy in ~1 ms: the
default model of the sampling panel, and the baseline a recurrent model must beat.
"""
import contextlib
import math
import numbers
import re

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import tasks, training

KINDS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


# ----------------------------------------------------------------------------- validation

def _check_ids(ids, vocab_size, name="ids", ndim=None):
    """-> int64 numpy array; every id in [0, vocab_size)."""
    arr = ids.detach().cpu().numpy() if isinstance(ids, torch.Tensor) else np.asarray(ids)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be integer token ids. Expected an integer dtype, got {arr.dtype}")
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dims. Expected {ndim}, got {arr.ndim} (shape {arr.shape})")
    if arr.size and (arr.min() < 0 or arr.max() >= vocab_size):
        raise ValueError(f"{name} must lie in [0, vocab_size). Expected 0..{vocab_size - 1}, "
                         f"got {int(arr.min())}..{int(arr.max())}")
    return arr.astype(np.int64, copy=False)


def _check_temperature(temperature):
    if (isinstance(temperature, bool) or not isinstance(temperature, numbers.Real)
            or not (math.isfinite(temperature) and temperature > 0)):
        raise ValueError(f"temperature must be a finite number > 0. Expected > 0, got {temperature!r}")
    return float(temperature)


def _vocab_size(model):
    if not isinstance(model, (CharRNN, BigramModel)):
        raise ValueError(f"model must be a CharRNN or a BigramModel. Expected one of them, got {type(model).__name__}")
    return model.vocab_size


@contextlib.contextmanager
def one_thread():
    """Run torch on one intra-op thread inside the block, then restore the previous setting.

    A sampling loop runs one (1, 1, H) step at a time: nothing to parallelise, and on a loaded 2-core machine the
    second thread's synchronisation made a 60-step loop up to 20x slower (measured for lesson 07's panel).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ----------------------------------------------------------------------------- models

class CharRNN(nn.Module):
    """Embedding -> recurrent layer(s) (batch_first) -> Linear.

    forward(x (B, T) int64, state=None) -> (logits (B, T, V), state)
    state is h_n (num_layers, B, H) for "gru"/"rnn" and (h_n, c_n) for "lstm", exactly what torch returns:
    pass it back in to continue a sequence (sampling, stateful training).
    """

    def __init__(self, vocab_size, hidden_size=128, kind="gru", embed_size=32, num_layers=1):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {sorted(KINDS)}. Expected one of them, got {kind!r}")
        self.vocab_size = tasks._check_int("vocab_size", vocab_size, 2)
        self.kind = kind
        self.embed = nn.Embedding(vocab_size, tasks._check_int("embed_size", embed_size, 1))
        self.rnn = KINDS[kind](embed_size, tasks._check_int("hidden_size", hidden_size, 1),
                               num_layers=tasks._check_int("num_layers", num_layers, 1), batch_first=True)
        self.head = nn.Linear(hidden_size, vocab_size)

    def forward(self, x, state=None):
        if not isinstance(x, torch.Tensor) or x.dtype != torch.int64 or x.ndim != 2:
            got = f"{x.dtype} tensor of {x.ndim} dims" if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must be an int64 tensor (B, T) of character ids. Expected (B, T) int64, got {got}")
        out, state = self.rnn(self.embed(x), state)  # (B, T, H): every h_t of the last layer
        return self.head(out), state                  # (B, T, V)


class BigramModel(nn.Module):
    """log P(next | current) from counts with add-alpha smoothing; the context is the last character only.

    forward(x (B, T) int64, state=None) -> (log_probs[x] (B, T, V), None). Its loss on the text it was counted
    on is the empirical conditional entropy H(next | current) (plus a little for the smoothing).
    """

    def __init__(self, ids, vocab_size, alpha=0.1):
        super().__init__()
        self.vocab_size = tasks._check_int("vocab_size", vocab_size, 2)
        ids = _check_ids(ids, vocab_size, ndim=1)
        if len(ids) < 2:
            raise ValueError(f"ids must hold at least one pair. Expected length >= 2, got {len(ids)}")
        if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not (math.isfinite(alpha) and alpha > 0):
            raise ValueError(f"alpha must be a finite number > 0. Expected > 0, got {alpha!r}")
        counts = np.full((vocab_size, vocab_size), float(alpha))
        np.add.at(counts, (ids[:-1], ids[1:]), 1.0)                  # counts[a, b]: how often b follows a
        log_probs = np.log(counts / counts.sum(1, keepdims=True))      # (V, V), rows sum to 1 in probability
        self.register_buffer("log_probs", torch.tensor(log_probs, dtype=torch.float32))

    def forward(self, x, state=None):
        if not isinstance(x, torch.Tensor) or x.dtype != torch.int64 or x.ndim != 2:
            raise ValueError("x must be an int64 tensor (B, T) of character ids. Expected (B, T) int64, "
                             f"got {type(x).__name__}")
        return self.log_probs[x], None  # (B, T, V)


# ----------------------------------------------------------------------------- loss, training, evaluation

def char_loss(model, x, y):
    """Mean next-character cross-entropy in nats. x, y (B, T) int64 (numpy or torch) -> scalar tensor.

    nn.functional.cross_entropy wants the classes on dim 1: (B, T, V) logits are flattened to (B*T, V).
    """
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    if x.shape != y.shape or x.ndim != 2:
        raise ValueError(f"x and y must both be (B, T). Expected equal 2-D shapes, got {tuple(x.shape)} and {tuple(y.shape)}")
    logits, _ = model(x)                                            # (B, T, V)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


def train_char_model(model, ids, *, steps, seq_len=64, batch_size=32, lr=3e-3, clip=("norm", 1.0), seed=0,
                     log_every=1):
    """Teacher-forced training on random windows of ids (N,). -> helpers.training.History.

    Each step draws batch_size windows of seq_len characters (tasks.char_batches, one Generator seeded with
    seed for the whole run), starts from h_0 = 0 (stateless batches), and takes one Adam step.
    """
    ids = _check_ids(ids, _vocab_size(model), ndim=1)
    rng = np.random.default_rng(tasks._check_int("seed", seed, 0))

    def batches(step):
        x, y = tasks.char_batches(ids, seq_len, batch_size, rng)    # (B, T) each
        return torch.from_numpy(x), torch.from_numpy(y)

    return training.train(model, batches, char_loss, steps=steps, optimizer="adam", lr=lr, clip=clip, seed=seed,
                          log_every=log_every)


@torch.no_grad()
def evaluate(model, ids, seq_len=None):
    """Mean cross-entropy (nats/char) of predicting ids[1:] from ids[:-1]. ids (N,) int.

    seq_len None: read as ONE sequence from h_0 = 0, so late characters see up to N - 1 characters of context.
    seq_len int:  cut into consecutive windows of seq_len inputs (the last one may be shorter), each read from
                  h_0 = 0 like a training window; the mean is over every predicted character. Use the training
                  window length to compare held-out and training loss like with like.
    """
    ids = _check_ids(ids, _vocab_size(model), ndim=1)
    if len(ids) < 2:
        raise ValueError(f"ids must hold at least two characters. Expected length >= 2, got {len(ids)}")
    n = len(ids) - 1                                                # predicted characters
    seq_len = n if seq_len is None else tasks._check_int("seq_len", seq_len, 1)
    full = n // seq_len * seq_len
    pieces = [(ids[:full].reshape(-1, seq_len), ids[1:full + 1].reshape(-1, seq_len))] if full else []
    if full < n:
        pieces.append((ids[None, full:n], ids[None, full + 1:]))    # the shorter last window, (1, n - full)
    was_training = model.training
    model.eval()
    total = 0.0
    with one_thread():
        for x, y in pieces:                                         # (W, seq_len) windows, all from h_0 = 0
            total += float(char_loss(model, torch.from_numpy(x), torch.from_numpy(y))) * y.size
    model.train(was_training)
    return total / n


def unigram_entropy(ids, vocab_size):
    """Entropy (nats) of the character frequencies of ids (N,): the loss of the best context-free predictor."""
    ids = _check_ids(ids, vocab_size, ndim=1)
    if len(ids) == 0:
        raise ValueError("ids must not be empty. Expected length >= 1, got 0")
    p = np.bincount(ids, minlength=vocab_size) / len(ids)           # (V,)
    return entropy(p)


# ----------------------------------------------------------------------------- temperature and sampling

def temperature_probs(logits, temperature):
    """softmax(logits / temperature) over the last axis, in float64. logits (..., V) -> probs (..., V).

    Computed as exp((z - max z) / tau): no overflow for any tau > 0, and the argmax keeps probability > 0 even
    when every other entry underflows (tau -> 0 gives the one-hot of the argmax).
    """
    tau = _check_temperature(temperature)
    z = np.asarray(logits.detach().cpu().numpy() if isinstance(logits, torch.Tensor) else logits, dtype=np.float64)
    if z.ndim == 0 or z.shape[-1] < 1:
        raise ValueError(f"logits must have a last axis of size >= 1. Expected (..., V), got shape {z.shape}")
    if not np.all(np.isfinite(z)):
        raise ValueError(f"logits must be finite. Expected finite values, got {np.sum(~np.isfinite(z))} non-finite")
    e = np.exp((z - z.max(axis=-1, keepdims=True)) / tau)
    return e / e.sum(axis=-1, keepdims=True)


def entropy(p, axis=-1):
    """Shannon entropy in nats, -sum p ln p over axis (0 ln 0 = 0). p (..., V) probabilities -> (...)."""
    p = np.asarray(p, dtype=np.float64)
    if p.ndim == 0 or np.any(p < 0) or not np.all(np.isfinite(p)):
        raise ValueError(f"p must be an array of finite probabilities >= 0. Expected (..., V) >= 0, got shape "
                         f"{p.shape}, min {np.min(p) if p.size else None}")
    logp = np.log(np.where(p > 0, p, 1.0))
    h = -np.sum(p * logp, axis=axis)
    return float(h) if np.ndim(h) == 0 else h


@torch.no_grad()
def next_char_logits(model, prompt_ids):
    """Logits (V,) float64 of the character after prompt_ids (P,), P >= 1, read from h_0 = 0."""
    prompt = _check_ids(prompt_ids, _vocab_size(model), "prompt_ids", ndim=1)
    if len(prompt) == 0:
        raise ValueError("prompt_ids must not be empty. Expected length >= 1, got 0")
    with one_thread():                                              # one short sequence: see one_thread
        logits, _ = model(torch.from_numpy(prompt[None]))           # (1, P, V)
    return logits[0, -1].double().numpy()


@torch.no_grad()
def sample(model, prompt_ids, n, temperature=1.0, seed=0):
    """Generate n ids after prompt_ids (P,), P >= 1. -> (n,) int64; same seed, same text.

    The prompt is read once, then each step feeds the sampled id back with the carried state (one step of the
    recurrence per character). Draws use a numpy Generator (inverse CDF), so the text does not depend on
    torch's global RNG.
    """
    V = _vocab_size(model)
    prompt = _check_ids(prompt_ids, V, "prompt_ids", ndim=1)
    n = tasks._check_int("n", n, 0)
    tau = _check_temperature(temperature)
    if len(prompt) == 0:
        raise ValueError("prompt_ids must not be empty. Expected length >= 1, got 0")
    rng = tasks._rng(seed)
    was_training = model.training
    model.eval()
    out = np.empty(n, dtype=np.int64)
    with one_thread():
        logits, state = model(torch.from_numpy(prompt[None]))       # (1, P, V)
        for i in range(n):
            cdf = np.cumsum(temperature_probs(logits[0, -1], tau))  # (V,)
            out[i] = min(int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right")), V - 1)
            logits, state = model(torch.tensor([[out[i]]]), state)  # (1, 1, V): one step, state carried
    model.train(was_training)
    return out


def temperature_view(model, prompt_ids, temperature, top_k=15, n_sample=80, seed=0):
    """Everything the sampling panel shows for one prompt and one temperature. -> dict

    top      (k,) ids of the k most likely next characters, most likely first (the same order at every tau:
             dividing by tau > 0 keeps the ranking)
    probs    (k,) their probabilities at tau;   probs_1 (k,) at tau = 1 (the model's own distribution)
    rest     probability at tau of the V - k characters not shown
    entropy  entropy (nats) of the full next-character distribution at tau;  entropy_1 at tau = 1
    sample   (n_sample,) ids sampled after the prompt at tau with this seed
    """
    V = _vocab_size(model)
    top_k = min(tasks._check_int("top_k", top_k, 1), V)
    logits = next_char_logits(model, prompt_ids)                     # (V,)
    p, p1 = temperature_probs(logits, temperature), temperature_probs(logits, 1.0)
    top = np.argsort(-logits, kind="stable")[:top_k]                 # (k,) ranking by logit = ranking at any tau
    return {"top": top, "probs": p[top], "probs_1": p1[top], "rest": float(max(0.0, 1.0 - p[top].sum())),
            "entropy": entropy(p), "entropy_1": entropy(p1),
            "sample": sample(model, prompt_ids, n_sample, temperature, seed)}


def text_stats(text, reference, n=8):
    """Two sides of the temperature trade-off for a generated text. -> {"real_words", "distinct_ngrams"}

    real_words       fraction of the words of text (runs of a-z, lower-cased) that occur in reference
                     (quality: high at low tau)
    distinct_ngrams  distinct character n-grams / all n-grams of text (diversity: a greedy loop
                     that repeats itself scores low)
    """
    if not isinstance(text, str) or not isinstance(reference, str):
        raise ValueError(f"text and reference must be str. Expected str, got {type(text).__name__} and "
                         f"{type(reference).__name__}")
    n = tasks._check_int("n", n, 1)
    if len(text) < n:
        raise ValueError(f"text must hold at least one n-gram. Expected length >= {n}, got {len(text)}")
    words = re.findall(r"[a-z]+", text.lower())
    known = set(re.findall(r"[a-z]+", reference.lower()))
    grams = [text[i:i + n] for i in range(len(text) - n + 1)]
    return {"real_words": float(np.mean([w in known for w in words])) if words else 0.0,
            "distinct_ngrams": len(set(grams)) / len(grams)}
