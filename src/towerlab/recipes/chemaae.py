"""chemaae: the adversarial autoencoder for SMILES (Makhzani et al. 2016; druGAN, Kadurin et al. 2017; Blaschke et al.
2018): chemvae's encoder and decoder, a deterministic code z, and a discriminator that tells encoded codes from
samples of the prior N(0, I). Three losses: reconstruction (the decoder's cross-entropy), discriminator (real =
prior, fake = code) and generator (the encoder fooling the discriminator), which pulls the codes onto the prior
so that decoding prior samples writes molecules.

Two training schemes (`--scheme`), each one backward per step, so DDP averages gradients as for any recipe:
joint: all three computed in one forward pass and one backward: the discriminator's loss sees the code detached
(it trains only the discriminator), the generator's loss sees the discriminator through detached parameters
(it trains only the encoder), weighted adaptively; one optimizer step then updates both players.
moses: as the MOSES AAE trains it (molecularsets/moses, AAETrainer): steps alternate between the autoencoder
(encoder and decoder: reconstruction per real token, the padding masked out, plus the generator loss) and the
discriminator. The players' parameters are disjoint and Adam keeps its state per parameter, so one Adam whose
step sees only the current player's gradients (the other's are dropped before it) is the two Adams of MOSES.

    towerlab train chemaae --data zinc.txt
    towerlab chem sample RUN --n 1000
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from towerlab.chem import corpus
from towerlab.chem.tokens import Vocab
from towerlab.data.loader import Data
from towerlab.dist import Dist, all_reduce_sum
from towerlab.errors import ConfigError
from towerlab.precision import Precision
from towerlab.recipes import chemvae
from towerlab.recipes.chemvae import Conv1dEncoder, Conv2dEncoder, ConvDecoder, GRUDecoder
from towerlab.recipes.configs import ChemaaeConfig
from towerlab.recipes.contract import Step
from towerlab.strategy import unwrap

NAME = "chemaae"
MAIN_METRIC = ("recon_loss", "min")
Config = ChemaaeConfig
DEFAULT_FILE = chemvae.DEFAULT_FILE
data_file = chemvae.data_file
save_artifacts, with_artifacts = corpus.save_vocab, corpus.with_vocab  # vocab.json beside the weights


def prepared(cfg: Config):
    return corpus.prepared(cfg, [], DEFAULT_FILE)


def build_data(cfg: Config, dist: Dist) -> Data:
    from towerlab.data.loader import tensor_data

    p = prepared(cfg)
    return tensor_data(cfg, dist, p.train[:1], p.val[:1], corpus.widen, held_out=True, vocab=p.vocab)


class ChemAAE(nn.Module):
    property_names: list[str] = []  # no property head: `chem optimize` says so

    def __init__(self, cfg: Config, vocab: int):
        super().__init__()
        self.vocab, self.padded = vocab, -(-vocab // 4) * 4
        self.adversarial_weight, self.scheme, self.clip = cfg.adversarial_weight, cfg.scheme, cfg.clip_grad
        self.encoder = (Conv2dEncoder if cfg.encoder == "conv2d" else Conv1dEncoder)(cfg.max_len, self.padded)
        self.code = nn.Linear(self.encoder.out, cfg.latent)
        self.decoder = (
            ConvDecoder(cfg.latent, cfg.max_len, self.padded)
            if cfg.decoder == "conv"
            else GRUDecoder(cfg.latent, cfg.max_len, self.padded, cfg.gru_hidden)
        )
        w = cfg.discriminator_hidden
        self.discriminator = nn.Sequential(
            nn.Linear(cfg.latent, w), nn.LeakyReLU(0.2), nn.Linear(w, w), nn.LeakyReLU(0.2), nn.Linear(w, 1)
        )

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.code(self.encoder(F.one_hot(tokens, self.padded).float()))

    def judge_frozen(self, z: torch.Tensor) -> torch.Tensor:
        """The discriminator's logit for z, its parameters held constant: gradients reach z (the encoder) only."""
        frozen = {k: v.detach() for k, v in self.discriminator.named_parameters()}
        return functional_call(self.discriminator, frozen, (z,))[:, 0]

    def forward(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.encode(tokens)
        prior = torch.randn_like(z)
        return {
            "logits": self.decoder(z, tokens)[..., : self.vocab],
            "z": z,
            "d_prior": self.discriminator(prior)[:, 0],
            "d_code": self.discriminator(z.detach())[:, 0],
            "g_code": self.judge_frozen(z),
        }

    def generate(
        self, z: torch.Tensor, temperature: float = 0.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        tokens = self.decoder.generate(z, temperature, generator)
        return torch.where(tokens < self.vocab, tokens, torch.zeros_like(tokens))


def build_model(cfg: Config, data: Data | None = None) -> nn.Module:
    if data is None:
        if not cfg.vocab_file:
            raise ConfigError("chemaae's model is built from its data, or from a run's vocab.json (--vocab-file)")
        return ChemAAE(cfg, len(Vocab.load(Path(cfg.vocab_file))))
    return ChemAAE(cfg, len(data.meta["vocab"]))


def _losses(out: dict, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    bce = F.binary_cross_entropy_with_logits
    d_prior, d_code, g_code = out["d_prior"].float(), out["d_code"].float(), out["g_code"].float()
    return {
        "recon": F.cross_entropy(out["logits"].float().transpose(1, 2), tokens, reduction="sum") / len(tokens),
        "discriminator": bce(d_prior, torch.ones_like(d_prior)) + bce(d_code, torch.zeros_like(d_code)),
        "generator": bce(g_code, torch.ones_like(g_code)),
    }


def _real_tokens(tokens: torch.Tensor) -> torch.Tensor:
    """True at each molecule's tokens and its end token (the first 0); False on the padding after it."""
    ended = (tokens == 0).cumsum(1)
    return (ended == 0) | ((ended == 1) & (tokens == 0))


def adaptive_weight(recon: torch.Tensor, generator: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """||d recon / d z|| / ||d generator / d z|| (VQGAN's adaptive weight, Esser et al. 2021), a constant: the
    encoder gets as strong a push towards the prior as towards reconstruction. One optimizer sees the sum of both
    gradients, and the reconstruction's alone would drown the other (alternating AAE steps with two Adams do not
    have that problem; one step keeps DDP to one backward)."""
    g_rec = torch.autograd.grad(recon, z, retain_graph=True)[0]
    g_gen = torch.autograd.grad(generator, z, retain_graph=True)[0]
    return (g_rec.norm() / (g_gen.norm() + 1e-6)).clamp(max=1e4).detach()


def loss(model, batch, step: Step):
    tokens = batch[0]
    net = unwrap(model, ChemAAE)
    out = model(tokens)
    parts = _losses(out, tokens)
    # Reconstruction per token position (the molecule's sum, logged as "recon" like chemvae's, divided by its
    # length): summed over ~100 positions it outweighed the adversarial terms a hundredfold and the encoder
    # grew its codes to a spread of 200 while the discriminator learned nothing (MOSES's AAE averages per token).
    recon = parts["recon"] / tokens.shape[1]
    total = (
        recon
        + adaptive_weight(recon, parts["generator"], out["z"]) * net.adversarial_weight * parts["generator"]
        + parts["discriminator"]
    )
    return total, {k: v.detach() for k, v in parts.items()}


def train_step(
    model, batch, step: Step, optimizer: torch.optim.Optimizer, precision: Precision
) -> dict[str, torch.Tensor]:
    """One optimizer step of the configured scheme (module docstring), through precision.py like every loop."""
    tokens = batch[0]
    net = unwrap(model, ChemAAE)
    optimizer.zero_grad(set_to_none=True)
    if net.scheme == "joint":
        total, logs = loss(model, batch, step)
        precision.backward(total)
    else:
        out = model(tokens)
        parts = _losses(out, tokens)
        autoencoder_turn = step.step % 2 == 0
        if autoencoder_turn:
            per_token = F.cross_entropy(out["logits"].float().transpose(1, 2), tokens, reduction="none")
            total = per_token[_real_tokens(tokens)].mean() + parts["generator"]
        else:
            total = parts["discriminator"]
        # every parameter in the graph (a zero term), so that DDP's one all-reduce covers them all; the other
        # player's gradients are then dropped, so the step moves only this player's parameters
        precision.backward(total + 0.0 * (out["logits"].sum() + out["d_prior"].sum()))
        resting = net.discriminator if autoencoder_turn else nn.ModuleList([net.encoder, net.code, net.decoder])
        for p in resting.parameters():
            p.grad = None
        logs = {k: v.detach() for k, v in parts.items()}
    precision.step(optimizer, net.parameters(), net.clip)  # the resting player's gradients are None: not clipped
    return {"loss": total.detach(), **logs}


@torch.no_grad()
def evaluate(model, loader, dist: Dist) -> dict[str, float]:
    """Reconstruction (per token; exact, decoding the code), the three losses, and the discriminator's accuracy
    at telling codes from prior samples (0.5: the codes look like the prior)."""
    net = unwrap(model, ChemAAE)
    sums = torch.zeros(8, dtype=torch.float64, device=dist.device)
    for (tokens,) in loader:
        if not len(tokens):  # this process's share of an uneven split can be an empty batch
            continue
        out = net(tokens)
        parts = _losses(out, tokens)
        length = (tokens != 0).sum(1) + 1
        mask = torch.arange(tokens.shape[1], device=tokens.device) < length.clamp(max=tokens.shape[1])[:, None]
        decoded = net.generate(out["z"])
        n = len(tokens)
        sums += torch.stack(
            [
                torch.tensor(n, device=dist.device),
                ((out["logits"].argmax(-1) == tokens) & mask).sum(),
                mask.sum(),
                ((decoded == tokens) | ~mask).all(1).sum(),
                parts["recon"] * n,
                parts["discriminator"] * n,
                parts["generator"] * n,
                ((out["d_prior"] > 0).sum() + (out["d_code"] <= 0).sum()) / 2,
            ]
        ).double()
    all_reduce_sum(sums, dist)
    n = sums[0].clamp_min(1)
    return {
        "recon_token_accuracy": float(sums[1] / sums[2].clamp_min(1)),
        "recon_exact": float(sums[3] / n),
        "recon_loss": float(sums[4] / n),
        "discriminator_loss": float(sums[5] / n),
        "generator_loss": float(sums[6] / n),
        "discriminator_accuracy": float(sums[7] / n),
    }


# -- the Generator and Autoencoder capabilities ----------------------------------------------------------------
@torch.no_grad()
def encode(model, tokens: torch.Tensor) -> torch.Tensor:
    return unwrap(model, ChemAAE).encode(tokens)


@torch.no_grad()
def decode(model, z: torch.Tensor, temperature: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
    return unwrap(model, ChemAAE).generate(z, temperature, generator)


def latent_size(model) -> int:
    return unwrap(model, ChemAAE).code.out_features


@torch.no_grad()
def sample(model, n: int, temperature: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
    net = unwrap(model, ChemAAE)
    z = torch.randn(n, latent_size(net), generator=generator).to(net.code.weight.device)
    return decode(net, z, temperature, generator)
