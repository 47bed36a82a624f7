"""chemvae: a SMILES variational autoencoder with a property head (Gómez-Bombarelli et al. 2018), RDKit for chemistry.

towerlab train chemvae --data zinc.txt                           # ZINC SMILES; QED and logP computed by RDKit
towerlab train chemvae --data tox21.csv --properties NR-AR,SR-p53 --decoder gru
towerlab chem sample RUN_DIR --n 1000                             # validity / uniqueness / novelty, CSV
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from towerlab.chem import corpus
from towerlab.chem.tokens import Vocab, pick
from towerlab.data.loader import Data, tensor_data
from towerlab.dist import Dist, all_gather_rows, all_reduce_sum
from towerlab.errors import ConfigError
from towerlab.metrics import roc_auc
from towerlab.recipes.configs import CHEMVAE_DEFAULT_FILE, ChemvaeConfig
from towerlab.recipes.contract import Step
from towerlab.strategy import unwrap

NAME = "chemvae"
MAIN_METRIC = ("loss", "min")
DEFAULT_FILE = CHEMVAE_DEFAULT_FILE


Config = ChemvaeConfig  # in recipes/configs.py, which imports no torch: a quick --help


def property_names(cfg: Config) -> list[str]:
    return [p.strip() for p in cfg.properties.split(",") if p.strip()]


# -- data ----------------------------------------------------------------------------------------------------
def data_file(cfg: Config) -> Path:
    return corpus.data_file(cfg, DEFAULT_FILE)


def prepared(cfg: Config) -> corpus.Prepared:
    return corpus.prepared(cfg, property_names(cfg), DEFAULT_FILE)


def build_data(cfg: Config, dist: Dist) -> Data:
    """The loaders, and in meta what the model is built from: the vocabulary and the property statistics."""
    p = prepared(cfg)
    meta = dict(vocab=p.vocab, binary=p.binary, mean=p.mean, std=p.std)
    return tensor_data(cfg, dist, p.train, p.val, corpus.widen, held_out=True, **meta)


save_artifacts, with_artifacts = corpus.save_vocab, corpus.with_vocab  # vocab.json beside the weights


# -- model ---------------------------------------------------------------------------------------------------
class Conv2dEncoder(nn.Module):
    """The post's encoder: the one-hot matrix as a 1-channel image; conv 3x3 64, conv 3x3 128 (BN, ReLU, pool);
    dense 1024."""

    def __init__(self, max_len: int, vocab: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 64, 3, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1),
            nn.BatchNorm2d(128),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(128 * (max_len // 4) * (vocab // 4), 1024),
            nn.ReLU(),
        )
        self.out = 1024

    def forward(self, onehot: torch.Tensor) -> torch.Tensor:
        return self.net(onehot.unsqueeze(1))


class Conv1dEncoder(nn.Module):
    """Gómez-Bombarelli et al.: 1D convolutions over the sequence (9, 9, 10 filters of width 9, 9, 11), dense 435."""

    def __init__(self, max_len: int, vocab: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(vocab, 9, 9),
            nn.BatchNorm1d(9),
            nn.Tanh(),
            nn.Conv1d(9, 9, 9),
            nn.BatchNorm1d(9),
            nn.Tanh(),
            nn.Conv1d(9, 10, 11),
            nn.BatchNorm1d(10),
            nn.Tanh(),
            nn.Flatten(),
            nn.Linear(10 * (max_len - 26), 435),
            nn.Tanh(),
        )
        self.out = 435

    def forward(self, onehot: torch.Tensor) -> torch.Tensor:
        return self.net(onehot.transpose(1, 2))


class ConvDecoder(nn.Module):
    """The post's decoder, the encoder mirrored: dense -> [128, L/4, V/4] -> 2x up-convolution 64 -> 2x up-convolution
    32 -> conv 1 = [L, V] logits. Learned (transposed-convolution) upsampling: with nearest-neighbour upsampling the
    four vocabulary entries that share a cell would share their features, and most token distributions could not be
    represented at all (a 64-molecule batch could not be memorised)."""

    def __init__(self, latent: int, max_len: int, vocab: int):
        super().__init__()
        self.shape = (128, max_len // 4, vocab // 4)
        self.fc = nn.Sequential(nn.Linear(latent, 1024), nn.ReLU(), nn.Linear(1024, math.prod(self.shape)), nn.ReLU())
        self.net = nn.Sequential(
            nn.ConvTranspose2d(128, 64, 4, stride=2, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.Conv2d(32, 1, 3, padding=1),
        )
        nn.init.zeros_(self.net[-1].weight)  # start from uniform token probabilities, not logits in the thousands

    def forward(self, z: torch.Tensor, tokens: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(self.fc(z).view(-1, *self.shape)).squeeze(1)  # [N, L, V] logits

    def generate(self, z: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
        logits = self(z)
        return pick(logits.flatten(0, 1), temperature, generator).view(logits.shape[:2])


class GRUDecoder(nn.Module):
    """Gómez-Bombarelli et al.'s 3 GRU layers with teacher forcing (the true previous token as input). z enters as the
    layers' initial state through a tanh projection: fed at every step unbounded, as a repeated input, large or noisy
    latent values saturated the gates and drowned the token signal (the VAE could not memorise 64 molecules)."""

    def __init__(self, latent: int, max_len: int, vocab: int, hidden: int):
        super().__init__()
        self.max_len, self.vocab, self.layers, self.hidden = max_len, vocab, 3, hidden
        self.init = nn.Linear(latent, hidden * self.layers)
        self.gru = nn.GRU(vocab, hidden, num_layers=self.layers, batch_first=True)
        self.out = nn.Linear(hidden, vocab)

    def _state(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.init(z)).view(len(z), self.layers, self.hidden).transpose(0, 1).contiguous()

    def forward(self, z: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        prev = F.one_hot(F.pad(tokens[:, :-1], (1, 0)), self.vocab).to(z.dtype)  # start: the end token
        return self.out(self.gru(prev, self._state(z))[0])

    def generate(self, z: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
        state = self._state(z)
        prev = torch.zeros(len(z), 1, dtype=torch.long, device=z.device)
        out = []
        for _ in range(self.max_len):
            y, state = self.gru(F.one_hot(prev, self.vocab).to(z.dtype), state)
            prev = pick(self.out(y[:, -1]), temperature, generator).unsqueeze(1)
            out.append(prev)
        return torch.cat(out, 1)


class ChemVAE(nn.Module):
    def __init__(self, cfg: Config, vocab: int, binary: list[bool], mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.vocab, self.padded = vocab, -(-vocab // 4) * 4  # the conv nets need the vocabulary a multiple of 4
        self.beta, self.warmup, self.free_bits = cfg.beta, cfg.kl_warmup_steps, cfg.free_bits
        self.property_weight, self.property_names = cfg.property_weight, property_names(cfg)
        enc = Conv2dEncoder if cfg.encoder == "conv2d" else Conv1dEncoder
        self.encoder = enc(cfg.max_len, self.padded)
        self.mu = nn.Linear(self.encoder.out, cfg.latent)
        self.sigma = nn.Linear(self.encoder.out, cfg.latent)
        self.decoder = (
            ConvDecoder(cfg.latent, cfg.max_len, self.padded)
            if cfg.decoder == "conv"
            else GRUDecoder(cfg.latent, cfg.max_len, self.padded, cfg.gru_hidden)
        )
        n = len(binary)
        self.head = (
            nn.Sequential(nn.Linear(cfg.latent, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, n))
            if n
            else None
        )
        self.register_buffer("binary", torch.tensor(binary, dtype=torch.bool))
        self.register_buffer("prop_mean", mean.clone())
        self.register_buffer("prop_std", std.clone())
        # runs saved before the warm-up read the engine's step kept a batch counter here: ignore it when loading
        self._register_load_state_dict_pre_hook(lambda sd, prefix, *a: sd.pop(prefix + "seen", None))

    def encode(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, standard deviation) of q(z | x); the deviation through a softplus, as in the post."""
        h = self.encoder(F.one_hot(tokens, self.padded).float())
        return self.mu(h), F.softplus(self.sigma(h)) + 1e-6

    def kl_weight(self, step: int) -> float:
        """beta, reached linearly over the first `warmup` optimizer steps (whatever the accumulation)."""
        return self.beta * min(step / self.warmup, 1.0) if self.warmup else self.beta

    def forward(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        mu, sigma = self.encode(tokens)
        z = mu + sigma * torch.randn_like(mu) if self.training else mu  # the reparameterisation trick
        logits = self.decoder(z, tokens)[..., : self.vocab]
        return {"logits": logits, "mu": mu, "sigma": sigma, "props": self.head(mu) if self.head is not None else None}

    def properties(self, z: torch.Tensor) -> torch.Tensor:
        """Predicted properties in their own units (probabilities for 0/1 labels)."""
        out = self.head(z)
        return torch.where(self.binary, out.sigmoid(), out * self.prop_std + self.prop_mean)

    def generate(
        self, z: torch.Tensor, temperature: float = 0.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        tokens = self.decoder.generate(z, temperature, generator)
        return torch.where(tokens < self.vocab, tokens, torch.zeros_like(tokens))  # padding columns read as the end


def kl_divergence(mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, 1)) per item, summed over latent dimensions (the closed form)."""
    return kl_per_dim(mu, sigma).sum(-1)


def kl_per_dim(mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    return 0.5 * (mu.pow(2) + sigma.pow(2) - 1 - 2 * sigma.log())


def kl_charged(mu: torch.Tensor, sigma: torch.Tensor, free_bits: float) -> torch.Tensor:
    """The KL the loss pays for: per latent dimension, the batch mean below `free_bits` nats is free, so the optimiser
    gains nothing by pushing a dimension all the way onto the prior (posterior collapse)."""
    per_dim = kl_per_dim(mu, sigma).mean(0)
    return per_dim.clamp(min=free_bits).sum() if free_bits else per_dim.sum()


def build_model(cfg: Config, data: Data | None = None) -> nn.Module:
    if data is None:  # a trained run rebuilt: sizes from its vocabulary; statistics come with the weights
        if not cfg.vocab_file:
            raise ConfigError("chemvae's model is built from its data, or from a run's vocab.json (--vocab-file)")
        n = len(property_names(cfg))
        return ChemVAE(cfg, len(Vocab.load(Path(cfg.vocab_file))), [False] * n, torch.zeros(n), torch.ones(n))
    m = data.meta
    return ChemVAE(cfg, len(m["vocab"]), m["binary"], m["mean"], m["std"])


# -- loss and metrics ----------------------------------------------------------------------------------------
def _property_loss(net: ChemVAE, pred: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """MSE on standardised numbers, BCE on 0/1 labels; missing values (nan) do not count."""
    known = ~values.isnan()
    target = torch.where(net.binary, values, (values - net.prop_mean) / net.prop_std).nan_to_num(0.0)
    per = torch.where(
        net.binary, F.binary_cross_entropy_with_logits(pred, target, reduction="none"), (pred - target).pow(2)
    )
    return (per * known).sum() / known.sum().clamp_min(1)


def loss(model, batch, step: Step):
    tokens, values = batch
    out = model(tokens)
    net = unwrap(model, ChemVAE)
    recon = F.cross_entropy(out["logits"].float().transpose(1, 2), tokens, reduction="sum") / len(tokens)
    mu, sigma = out["mu"].float(), out["sigma"].float()
    kl = kl_divergence(mu, sigma).mean()
    total = recon + net.kl_weight(step.step) * kl_charged(mu, sigma, net.free_bits)
    prop = torch.zeros(())
    if out["props"] is not None and values.shape[1]:
        prop = _property_loss(net, out["props"].float(), values)
        total = total + net.property_weight * prop
    return total, {"recon": recon.detach(), "kl": kl.detach(), "property": prop.detach()}


@torch.no_grad()
def evaluate(model, loader, dist: Dist) -> dict[str, float]:
    """Reconstruction (per token and exact, decoding the mean), KL, loss at full beta, property MAE / R^2 / AUC."""
    net = unwrap(model, ChemVAE)
    sums = torch.zeros(6, dtype=torch.float64, device=dist.device)  # items, tokens ok, tokens, exact, recon, kl
    preds, values = [], []
    for tokens, vals in loader:
        out = net(tokens)
        logits = out["logits"].float()
        length = (tokens != 0).sum(1) + 1  # the tokens and the end token
        mask = torch.arange(tokens.shape[1], device=tokens.device) < length.clamp(max=tokens.shape[1])[:, None]
        decoded = net.generate(out["mu"]) if isinstance(net.decoder, GRUDecoder) else logits.argmax(-1)
        teacher = logits.argmax(-1)
        sums += torch.stack(
            [
                torch.tensor(len(tokens), device=dist.device),
                ((teacher == tokens) & mask).sum(),
                mask.sum(),
                ((decoded == tokens) | ~mask).all(1).sum(),
                F.cross_entropy(logits.transpose(1, 2), tokens, reduction="sum"),
                kl_divergence(out["mu"].float(), out["sigma"].float()).sum(),
            ]
        ).double()
        if net.head is not None:
            preds.append(net.properties(out["mu"]).float())
            values.append(vals)
    all_reduce_sum(sums, dist)
    n = sums[0].clamp_min(1)
    m = {
        "recon_token_accuracy": float(sums[1] / sums[2].clamp_min(1)),
        "recon_exact": float(sums[3] / n),
        "recon_loss": float(sums[4] / n),
        "kl": float(sums[5] / n),
    }
    m["loss"] = m["recon_loss"] + net.beta * m["kl"]
    if net.head is not None:
        m.update(_property_metrics(net, preds, values, dist))
    return m


def _property_metrics(net: ChemVAE, preds: list, values: list, dist: Dist) -> dict[str, float]:
    out = {}
    p_all = all_gather_rows(torch.cat(preds) if preds else torch.zeros(0, len(net.binary), device=dist.device), dist)
    v_all = all_gather_rows(torch.cat(values) if values else torch.zeros(0, len(net.binary), device=dist.device), dist)
    for j, name in enumerate(net.property_names):
        p, v = p_all[:, j], v_all[:, j]
        known = ~v.isnan()
        p, v = p[known], v[known]
        if len(v) == 0:
            continue
        if net.binary[j]:
            out[f"{name}/auc"] = roc_auc(p, v)
        else:
            out[f"{name}/mae"] = float((p - v).abs().mean())
            out[f"{name}/r2"] = float(1 - (p - v).pow(2).sum() / (v - v.mean()).pow(2).sum().clamp_min(1e-12))
    return out


# -- properties of SMILES -------------------------------------------------------------------------------------
@torch.no_grad()
def predict(model, tokens: torch.Tensor) -> torch.Tensor:
    """Token indices [N, L] -> predicted properties [N, P] (from the mean of q(z|x))."""
    net = unwrap(model, ChemVAE)
    return net.properties(net.encode(tokens)[0])


# -- the Generator and Autoencoder capabilities ----------------------------------------------------------------
@torch.no_grad()
def encode(model, tokens: torch.Tensor) -> torch.Tensor:
    """Token indices [N, L] -> the mean of q(z|x) [N, latent]."""
    return unwrap(model, ChemVAE).encode(tokens)[0]


@torch.no_grad()
def decode(model, z: torch.Tensor, temperature: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Latent vectors -> token indices [N, L]: the most probable token at each step (temperature 0) or drawn."""
    return unwrap(model, ChemVAE).generate(z, temperature, generator)


def latent_size(model) -> int:
    return unwrap(model, ChemVAE).mu.out_features


@torch.no_grad()
def sample(model, n: int, temperature: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """n molecules decoded from z drawn from the prior N(0, I)."""
    z = torch.randn(n, latent_size(model), generator=generator)
    return decode(model, z.to(next(unwrap(model, ChemVAE).parameters()).device), temperature, generator)
