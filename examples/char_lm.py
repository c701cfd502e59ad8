"""A character-level GRU language model: embedding -> GRU -> linear, trained on the Jargon File.

The GRU is either ``tritongru.GRU`` (``--impl tritongru``, the persistent Triton kernels on a GPU)
or ``torch.nn.GRU`` (``--impl torch``); everything else is the same code. ``tritongru.GRU`` has
nn.GRU's constructor, parameters, parameter names and initialisation, so with the same ``--seed``
both runs start from the same weights, see the same batches and print the same losses (to
floating-point tolerance), and a checkpoint saved by one loads into the other.

    python examples/char_lm.py --impl tritongru --steps 2000          # on a GPU: also tokens/s
    python examples/char_lm.py --impl torch --steps 2000              # the same run on nn.GRU
    python examples/char_lm.py --impl torch --steps 0 --load char_lm.pt --sample 500

On a CPU, ``--impl tritongru`` runs tritongru's pure-PyTorch reference GRU, or the kernels
themselves under the Triton interpreter when ``TRITON_INTERPRET=1`` is set (slow: keep
``--seq-len``, ``--batch`` and ``--hidden`` tiny). The text is described in ``examples/data/README.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

try:
    from tqdm.auto import tqdm
except ImportError:  # tqdm is optional: fall back to a plain loop
    tqdm = None

DEFAULT_DATA = Path(__file__).resolve().parent / "data" / "jargon-4.4.7-excerpt.txt"
IMPLS = ("tritongru", "torch")
DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclasses.dataclass
class Config:
    """Everything that defines a run; saved in the checkpoint."""

    impl: str = "tritongru"
    backend: str = "auto"  # tritongru.GRU's backend (ignored for --impl torch)
    steps: int = 1000
    seq_len: int = 128
    batch: int = 32
    embed: int = 64
    hidden: int = 256
    layers: int = 2
    dropout: float = 0.0
    lr: float = 3e-3
    clip: float = 1.0
    seed: int = 0
    dtype: str = "float32"
    data: str = str(DEFAULT_DATA)
    val_fraction: float = 0.1
    eval_batches: int = 8

    def __post_init__(self) -> None:
        if self.impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}, got {self.impl!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {tuple(DTYPES)}, got {self.dtype!r}")


class CharVocab:
    """The distinct characters of a text, sorted; index = token id."""

    def __init__(self, chars: str) -> None:
        self.chars = chars
        self.index = {c: i for i, c in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str) -> "CharVocab":
        return cls("".join(sorted(set(text))))

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> torch.Tensor:
        return torch.tensor([self.index[c] for c in text], dtype=torch.long)

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)


def load_text(path: str | Path) -> str:
    return Path(path).read_text(encoding="utf-8")


def make_gru(impl: str, input_size: int, hidden: int, layers: int, *, dropout: float = 0.0,
             backend: str = "auto") -> nn.Module:
    """A time-major GRU of either implementation (the same constructor arguments and parameters)."""
    if impl == "tritongru":
        import tritongru

        return tritongru.GRU(input_size, hidden, layers, dropout=dropout, backend=backend)
    if impl == "torch":
        return nn.GRU(input_size, hidden, layers, dropout=dropout)
    raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")


class CharLM(nn.Module):
    """Embedding -> GRU -> linear over the vocabulary. Tokens are ``(B, T)``; the GRU runs time-major."""

    def __init__(self, vocab_size: int, config: Config) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, config.embed)
        self.gru = make_gru(config.impl, config.embed, config.hidden, config.layers,
                            dropout=config.dropout, backend=config.backend)
        self.head = nn.Linear(config.hidden, vocab_size)

    def init_hidden(self, batch: int) -> torch.Tensor:
        weight = self.head.weight
        return weight.new_zeros(self.gru.num_layers, batch, self.gru.hidden_size)

    def forward(self, tokens: torch.Tensor, h: torch.Tensor | None = None):
        """``tokens`` (B, T) -> logits (B, T, V) and the GRU's final state (layers, B, hidden)."""
        if h is None:
            h = self.init_hidden(tokens.shape[0])
        x = self.embed(tokens).transpose(0, 1)  # (T, B, embed)
        y, h = self.gru(x, h)
        return self.head(y).transpose(0, 1), h


def build_model(vocab_size: int, config: Config, device: str | torch.device = "cpu") -> CharLM:
    """The model with its initial weights drawn from ``config.seed`` (identical for both impls)."""
    torch.manual_seed(config.seed)
    return CharLM(vocab_size, config).to(device=device, dtype=DTYPES[config.dtype])


def split_data(data: torch.Tensor, val_fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    n_val = int(len(data) * val_fraction)
    return data[: len(data) - n_val], data[len(data) - n_val :]


def get_batch(data: torch.Tensor, batch: int, seq_len: int, generator: torch.Generator):
    """``batch`` random windows of the text: inputs and next-character targets, both (B, seq_len)."""
    if len(data) < seq_len + 2:
        raise ValueError(f"the text has {len(data)} characters, too few for --seq-len {seq_len}")
    starts = torch.randint(0, len(data) - seq_len - 1, (batch,), generator=generator)
    index = starts[:, None] + torch.arange(seq_len + 1)
    window = data[index]
    return window[:, :-1], window[:, 1:]


def lm_loss(model: CharLM, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits, _ = model(inputs)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


@torch.no_grad()
def evaluate(model: CharLM, data: torch.Tensor, config: Config, device) -> float:
    """Mean loss over ``config.eval_batches`` fixed windows of ``data`` (the held-out text)."""
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(config.seed + 2)
    losses = []
    for _ in range(config.eval_batches):
        inputs, targets = get_batch(data, config.batch, config.seq_len, generator)
        losses.append(lm_loss(model, inputs.to(device), targets.to(device)).item())
    model.train(was_training)
    return sum(losses) / len(losses)


@dataclasses.dataclass
class TrainResult:
    model: CharLM
    vocab: CharVocab
    losses: list[float]
    val_loss: float | None
    tokens_per_s: float | None


def train(config: Config, device: str | torch.device = "cpu", *, progress: bool = True, log_every: int = 50,
          text: str | None = None) -> TrainResult:
    """Train for ``config.steps`` steps and return the model and the per-step training losses.

    The batches come from a generator seeded with ``config.seed``, so two runs with the same
    config (either impl) see the same data in the same order.
    """
    device = torch.device(device)
    text = load_text(config.data) if text is None else text
    vocab = CharVocab.from_text(text)
    train_data, val_data = split_data(vocab.encode(text), config.val_fraction)
    model = build_model(len(vocab), config, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed + 1)

    steps = range(config.steps)
    bar = tqdm(steps, desc=f"{config.impl}", disable=not progress, dynamic_ncols=True) if tqdm else steps
    write = tqdm.write if tqdm else print
    step_losses: list[torch.Tensor] = []
    # The first steps compile the kernels: the throughput counts the steps after them.
    warmup = min(3, max(config.steps - 1, 0))
    start = None
    model.train()
    for step in bar:
        if step == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
        inputs, targets = get_batch(train_data, config.batch, config.seq_len, generator)
        loss = lm_loss(model, inputs.to(device), targets.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
        optimizer.step()
        step_losses.append(loss.detach())
        # Reading a loss waits for the GPU, so it is read only when shown.
        if step % (log_every or 10) == 0 or step == config.steps - 1:
            value = step_losses[-1].item()
            if tqdm and progress:
                bar.set_postfix(loss=f"{value:.4f}")
            if log_every:
                write(f"step {step:6d}  loss {value:.4f}  ({value / math.log(2):.3f} bits/char)")
    losses = torch.stack(step_losses).double().cpu().tolist() if step_losses else []
    tokens_per_s = None
    if device.type == "cuda" and start is not None and config.steps > warmup:
        torch.cuda.synchronize(device)
        tokens_per_s = (config.steps - warmup) * config.batch * config.seq_len / (time.perf_counter() - start)
    val_loss = evaluate(model, val_data, config, device) if config.eval_batches and len(val_data) > config.seq_len + 1 else None
    return TrainResult(model, vocab, losses, val_loss, tokens_per_s)


def save_checkpoint(path: str | Path, model: CharLM, vocab: CharVocab, config: Config, losses: list[float]) -> None:
    """The state_dict, the vocabulary and the config: all a later run needs to rebuild the model."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"config": dataclasses.asdict(config), "vocab": vocab.chars, "model": state, "losses": losses}, path)


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu", *, impl: str | None = None,
                    backend: str | None = None) -> tuple[CharLM, CharVocab, Config]:
    """Rebuild a saved model, and return it with its vocabulary and the config it was trained with.

    ``impl`` (and ``backend``), when given, choose the GRU the model runs on, which may differ from
    the one it was trained with: the two implementations' state_dicts are interchangeable.
    """
    saved = torch.load(path, map_location="cpu", weights_only=True)
    config = Config(**saved["config"])
    run_as = dataclasses.replace(config, impl=impl or config.impl, backend=backend or config.backend)
    vocab = CharVocab(saved["vocab"])
    model = build_model(len(vocab), run_as, device)
    model.load_state_dict(saved["model"])
    return model, vocab, config


@torch.no_grad()
def sample(model: CharLM, vocab: CharVocab, n: int, *, prompt: str = "\n", temperature: float = 0.8,
           seed: int = 0) -> str:
    """``n`` characters drawn one at a time after ``prompt``, carrying the GRU state between steps."""
    if not prompt:
        raise ValueError("the prompt needs at least one character")
    unknown = sorted(set(prompt) - set(vocab.chars))
    if unknown:
        raise ValueError(f"the prompt has characters that are not in the vocabulary: {unknown}")
    was_training = model.training
    model.eval()
    device = model.head.weight.device
    generator = torch.Generator().manual_seed(seed)
    logits, h = model(vocab.encode(prompt)[None].to(device))
    out = []
    for _ in range(n):
        probs = torch.softmax(logits[0, -1].double().cpu() / max(temperature, 1e-6), dim=-1)
        token = torch.multinomial(probs, 1, generator=generator)
        out.append(int(token))
        logits, h = model(token[None].to(device), h)
    model.train(was_training)
    return vocab.decode(out)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = Config()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--impl", choices=IMPLS, default=defaults.impl, help="which GRU implementation")
    p.add_argument("--backend", choices=("auto", "triton", "reference"), default=defaults.backend,
                   help="tritongru.GRU's backend (with --impl tritongru)")
    p.add_argument("--steps", type=int, default=defaults.steps, help="training steps (0: only load and sample)")
    p.add_argument("--seq-len", type=int, default=defaults.seq_len, help="characters per training window")
    p.add_argument("--batch", type=int, default=defaults.batch, help="windows per step")
    p.add_argument("--embed", type=int, default=defaults.embed, help="embedding size")
    p.add_argument("--hidden", type=int, default=defaults.hidden, help="GRU hidden size")
    p.add_argument("--layers", type=int, default=defaults.layers, help="GRU layers")
    p.add_argument("--dropout", type=float, default=defaults.dropout, help="dropout between GRU layers")
    p.add_argument("--lr", type=float, default=defaults.lr, help="Adam learning rate")
    p.add_argument("--seed", type=int, default=defaults.seed, help="seeds the weights, the batches and sampling")
    p.add_argument("--dtype", choices=tuple(DTYPES), default=defaults.dtype)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--data", default=defaults.data, help="UTF-8 training text")
    p.add_argument("--checkpoint", default="char_lm.pt", help="where to save the trained model")
    p.add_argument("--load", default=None, help="start from this checkpoint instead of training from scratch "
                   "(with --steps 0: only sample from it)")
    p.add_argument("--sample", type=int, default=200, help="characters to sample after training (0: none)")
    p.add_argument("--prompt", default="\n", help="text the sample starts from")
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--log-every", type=int, default=50, help="print the loss every N steps (0: never)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if args.load is not None and args.steps > 0:
        print("--load with --steps > 0 is not supported (this example trains from scratch); use --steps 0",
              file=sys.stderr)
        return 2
    if args.load is not None:
        model, vocab, config = load_checkpoint(args.load, device, impl=args.impl, backend=args.backend)
        print(f"loaded {args.load} (trained with --impl {config.impl}), running it on --impl {args.impl}")
    else:
        config = Config(
            impl=args.impl, backend=args.backend, steps=args.steps, seq_len=args.seq_len, batch=args.batch,
            embed=args.embed, hidden=args.hidden, layers=args.layers, dropout=args.dropout, lr=args.lr,
            seed=args.seed, dtype=args.dtype, data=args.data,
        )
        result = train(config, device, progress=not args.no_progress, log_every=args.log_every)
        if result.losses:
            print(f"final training loss {result.losses[-1]:.4f}")
        if result.val_loss is not None:
            print(f"held-out loss {result.val_loss:.4f} ({result.val_loss / math.log(2):.3f} bits/char)")
        if result.tokens_per_s is not None:
            print(f"throughput {result.tokens_per_s:,.0f} tokens/s ({args.impl}, {torch.cuda.get_device_name(device)})")
        save_checkpoint(args.checkpoint, result.model, result.vocab, config, result.losses)
        print(f"saved {args.checkpoint}")
        model, vocab, _ = load_checkpoint(args.checkpoint, device, impl=args.impl, backend=args.backend)
    if args.sample > 0:
        text = sample(model, vocab, args.sample, prompt=args.prompt, temperature=args.temperature, seed=args.seed)
        print("--- sample ---")
        print(args.prompt + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
