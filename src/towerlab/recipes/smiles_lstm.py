"""smiles-lstm: a SMILES language model (Segler et al. 2018; the GuacaMol "SMILES LSTM" baseline of Brown et al.
2019): token embedding, stacked LSTM, next-token softmax, trained by teacher forcing on a SMILES corpus.

    towerlab train smiles-lstm                                     # $TOWERLAB_DATA/moses/train.csv.gz
    towerlab chem sample RUN --n 10000 --temperature 1.0           # validity, unique@10k, novelty, FCD
    towerlab chem hillclimb RUN --objective qed                    # hill-climb MLE (GuacaMol's SMILES LSTM HC)
    towerlab chem mcts RUN --objective plogp --budget 5000         # ChemTS: tree search, RNN rollouts

A sequence starts from the end token (index 0) as its start symbol and stops at the first end token it writes.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from towerlab.chem import corpus, props
from towerlab.chem.tokens import Vocab, pick
from towerlab.data.loader import Data, tensor_data
from towerlab.dist import Dist, all_reduce_sum
from towerlab.errors import ConfigError
from towerlab.recipes.configs import SMILES_LSTM_DEFAULT_FILE, SmilesLstmConfig
from towerlab.recipes.contract import Step
from towerlab.strategy import unwrap

NAME = "smiles-lstm"
MAIN_METRIC = ("loss", "min")
Config = SmilesLstmConfig


# -- data ----------------------------------------------------------------------------------------------------
def data_file(cfg: Config) -> Path:
    return corpus.data_file(cfg, SMILES_LSTM_DEFAULT_FILE)


def prepared(cfg: Config) -> corpus.Prepared:
    return corpus.prepared(cfg, [], SMILES_LSTM_DEFAULT_FILE)


def build_data(cfg: Config, dist: Dist) -> Data:
    p = prepared(cfg)
    transform = randomizing(p.vocab) if cfg.randomize else corpus.widen
    # validation is scored on the canonical SMILES
    return tensor_data(cfg, dist, p.train[:1], p.val[:1], transform, corpus.widen, held_out=True, vocab=p.vocab)


def randomizing(vocab: Vocab):
    """The training transform of --randomize: each molecule of the batch written from a random atom order, seeded
    from the default CPU generator (whose state every checkpoint keeps, so a resumed run draws the same strings); a
    form longer than max_len keeps the canonical row."""

    def transform(tokens: torch.Tensor) -> tuple[torch.Tensor]:
        seed = int(torch.randint(0, 2**31 - 1, (1,)))
        rows, kept = vocab.encode(props.random_smiles(vocab.decode(tokens), seed))
        out = tokens.to(torch.long, copy=True)  # the stored batch is never written into
        if kept:
            out[torch.tensor(kept, device=tokens.device)] = rows.to(tokens.device)
        return (out,)

    return transform


save_artifacts, with_artifacts = corpus.save_vocab, corpus.with_vocab  # vocab.json beside the weights


# -- model ---------------------------------------------------------------------------------------------------
class SmilesLSTM(nn.Module):
    def __init__(self, cfg: Config, vocab: Vocab):
        super().__init__()
        self.tokens, self.max_len, self.eval_samples = vocab.tokens, vocab.max_len, cfg.eval_samples
        self.representation = vocab.representation
        self.embed = nn.Embedding(len(vocab), cfg.embedding)
        self.lstm = nn.LSTM(cfg.embedding, cfg.hidden, cfg.layers, batch_first=True, dropout=cfg.dropout)
        self.out = nn.Linear(cfg.hidden, len(vocab))

    def forward(self, inputs: torch.Tensor, state=None):
        y, state = self.lstm(self.embed(inputs), state)
        return self.out(y), state

    def initial_state(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.out.weight
        zeros = w.new_zeros(self.lstm.num_layers, n, self.lstm.hidden_size)
        return zeros, zeros.clone()


def build_model(cfg: Config, data: Data | None = None) -> nn.Module:
    if data is None:
        if not cfg.vocab_file:
            raise ConfigError("smiles-lstm's model is built from its data, or from a run's vocab.json (--vocab-file)")
        return SmilesLSTM(cfg, Vocab.load(Path(cfg.vocab_file)))
    return SmilesLSTM(cfg, data.meta["vocab"])


def _teacher_forcing(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(inputs, targets, mask) cut to the longest molecule of the batch plus its end token: the input starts with
    the end token as the start symbol; the targets are the tokens then the end token; padding after it is masked."""
    length = (tokens != 0).sum(1)
    t = int(length.max()) + 1
    inputs = F.pad(tokens, (1, 0))[:, :t]
    targets = F.pad(tokens, (0, 1))[:, :t]
    mask = torch.arange(t, device=tokens.device) <= length[:, None]
    return inputs, targets, mask


def loss(model, batch, step: Step):
    inputs, targets, mask = _teacher_forcing(batch[0])
    logits = model(inputs)[0].float()
    nll = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
    return (nll * mask).sum() / mask.sum(), {}


def log_likelihood(model, tokens: torch.Tensor) -> torch.Tensor:
    """log P(molecule) [N]: the sum of the log-probabilities of each token written and of the end token (REINVENT's
    likelihood), with gradients."""
    inputs, targets, mask = _teacher_forcing(tokens)
    logits = model(inputs)[0].float()
    logp = -F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
    return (logp * mask).sum(1)


# -- sampling: the Generator and SequenceModel capabilities ----------------------------------------------------
def initial_state(model, n: int):
    """The recurrent state before the first token: a tuple of tensors with the batch in dimension 1."""
    return unwrap(model, SmilesLSTM).initial_state(n)


def next_logits(model, last: torch.Tensor, state) -> tuple[torch.Tensor, tuple]:
    """Logits [N, V] of the next token after `last` [N] (token indices), and the state after it."""
    logits, state = unwrap(model, SmilesLSTM)(last[:, None], state)
    return logits[:, -1].float(), state


@torch.no_grad()
def sample(model, n: int, temperature: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """n molecules as token indices [n, max_len], drawn token by token on the model's device; 0 after the end."""
    net = unwrap(model, SmilesLSTM)
    device = net.out.weight.device
    state = net.initial_state(n)
    last = torch.zeros(n, dtype=torch.long, device=device)
    out = torch.zeros(n, net.max_len, dtype=torch.long, device=device)
    alive = torch.ones(n, dtype=torch.bool, device=device)
    for i in range(net.max_len):
        logits, state = next_logits(net, last, state)
        last = pick(logits, temperature, generator)
        last = torch.where(alive, last, torch.zeros_like(last))
        out[:, i] = last
        alive &= last != 0
        if not alive.any():
            break
    return out


def _smiles(model, tokens: torch.Tensor) -> list[str]:
    net = unwrap(model, SmilesLSTM)
    return Vocab(net.tokens, net.max_len, net.representation).decode(tokens.cpu())


# -- evaluation ----------------------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(model, loader, dist: Dist) -> dict[str, float]:
    """Per-token NLL (the loss), its perplexity, next-token accuracy; and the share of valid molecules among
    eval_samples drawn from the model (each process draws its part with its own seed)."""
    net = unwrap(model, SmilesLSTM)
    sums = torch.zeros(5, dtype=torch.float64, device=dist.device)  # nll, tokens, correct, valid, sampled
    for (tokens,) in loader:
        if not len(tokens):  # this process's share of an uneven split can be an empty batch
            continue
        inputs, targets, mask = _teacher_forcing(tokens)
        logits = net(inputs)[0].float()
        nll = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
        sums[:3] += torch.stack(
            [(nll * mask).sum(), mask.sum(), ((logits.argmax(-1) == targets) & mask).sum()]
        ).double()
    share = net.eval_samples // dist.world_size + (dist.rank < net.eval_samples % dist.world_size)
    if share:
        g = torch.Generator().manual_seed(1_000_003 + dist.rank)
        smiles = _smiles(net, sample(net, share, 1.0, g))
        sums[3] += sum(props.mol(s) is not None for s in smiles)
        sums[4] += share
    all_reduce_sum(sums, dist)
    nll = float(sums[0] / sums[1].clamp_min(1))
    m = {
        "loss": nll,
        "perplexity": float(torch.tensor(nll).exp()),
        "token_accuracy": float(sums[2] / sums[1].clamp_min(1)),
    }
    if sums[4]:
        m["sample_validity"] = float(sums[3] / sums[4])
    return m
