"""Transformer family: self-attention over a sequence, as an encoder and as a causal decoder (GPT).

The notes' idea: *attention lets every token relate to every other token*. Each position's
vector is rebuilt as a weighted mix of the vectors of the positions it attends to, with weights
``softmax(q·k / sqrt(d))`` computed from a query at that position and a key at every other one;
several heads do this side by side with their own projections. A stack of such blocks (attention,
then a per-position MLP, each wrapped in a residual connection with a layer norm before it) turns
token and position embeddings into features for a linear head.

Both models share :class:`TransformerBase` (embeddings, blocks, head, attention maps):

* ``transformer``: a bidirectional encoder (like BERT): every position attends to every position.
  It predicts one class per position when the data's targets are one per position
  (``zoo.per_position(info)``: ``DataInfo.meta["per_token"]``, else the task's ``per_position``;
  ``reverse``, ``sort``), otherwise it pools the positions (mean or max) for sequence
  classification or regression.
* ``gpt``: a causal decoder (like nanoGPT's ``model.py``): position ``t`` attends only to
  positions ``<= t``, so its output at ``t`` predicts token ``t + 1``; the output layer shares its
  weights with the token embedding, and ``generate()`` samples new text.

The text datasets (``reverse``, ``sort``, ``text``) are in ``zoo_builtins.text``: token ids
``(B, T)`` with the vocabulary in ``meta`` (``itos``, ``vocab_size``).

Training uses ``F.scaled_dot_product_attention`` (fused kernels on GPU); the attention weights of
the report's plot are recomputed with an explicit softmax for one example only.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

import zoo

# ----------------------------------------------------------------------------------- building blocks

class SelfAttention(nn.Module):
    """Multi-head self-attention: each position mixes the values of the positions it attends to.

    Args:
        d_model: width of each position's vector.
        n_heads: attention heads, each working on ``d_model / n_heads`` dimensions.
        dropout: dropout on the attention weights and on the output, while training.
        causal: position ``t`` sees only positions ``<= t`` (a decoder).
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, causal: bool = False):
        super().__init__()
        self.n_heads, self.dropout, self.causal = n_heads, dropout, causal
        self.qkv = nn.Linear(d_model, 3 * d_model)  # query, key and value projections in one matmul
        self.proj = nn.Linear(d_model, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, need_weights: bool = False):
        """``(B, T, C) -> (B, T, C)`` and, when ``need_weights``, the weights ``(B, heads, T, T)``."""
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2) for t in (q, k, v))
        weights = None
        if need_weights:  # the explicit softmax, for plots only (no dropout: call it in eval mode)
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
            if self.causal:
                future = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
                scores = scores.masked_fill(future, float("-inf"))
            weights = scores.softmax(dim=-1)
            y = weights @ v
        else:  # the training path: torch's fused attention
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0,
                                               is_causal=self.causal)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.drop(self.proj(y)), weights


class Block(nn.Module):
    """A pre-norm transformer block: ``x + attention(norm(x))``, then ``x + mlp(norm(x))``.

    Args:
        d_model: width of each position's vector.
        n_heads: attention heads.
        d_ff: hidden width of the per-position MLP.
        dropout: dropout in attention and MLP.
        causal: mask future positions.
        activation: the MLP's non-linearity (``gelu``, ``relu`` ...).
    """

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.0, causal: bool = False,
                 activation: str = "gelu"):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = SelfAttention(d_model, n_heads, dropout, causal)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, d_ff), zoo.activation(activation),
                                 nn.Linear(d_ff, d_model), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, need_weights: bool = False):
        a, weights = self.attn(self.ln1(x), need_weights)
        x = x + a
        x = x + self.mlp(self.ln2(x))
        return x, weights


# ----------------------------------------------------------------------------------- models

class TransformerBase(nn.Module):
    """Embeddings -> blocks -> layer norm -> head; subclasses set ``causal`` and ``make_head``.

    Args:
        out_features: classes per position (or per sequence), vocabulary size, or regression targets.
        max_len: the longest sequence (block size): one learned position embedding per position.
        vocab_size: token ids in ``[0, vocab_size)`` are embedded (inputs ``(B, T)`` long).
        in_features: alternatively, float features per step are projected (inputs ``(B, T, F)``).
        d_model: width of each position's vector.
        n_heads: attention heads; ``d_model`` must be a multiple of it.
        n_layers: transformer blocks.
        d_ff: hidden width of each block's MLP.
        dropout: dropout on embeddings, attention and MLP while training.
        activation: the MLP's non-linearity.
        per_token: one output per position ``(B, T, out)``; otherwise pool to ``(B, out)``.
        pool: how positions are pooled when not ``per_token``: ``mean`` or ``max``.
    """

    causal = False

    def __init__(self, *, out_features: int, max_len: int, vocab_size: int | None = None,
                 in_features: int | None = None, d_model: int, n_heads: int, n_layers: int, d_ff: int,
                 dropout: float, activation: str, per_token: bool, pool: str = "mean"):
        super().__init__()
        if (vocab_size is None) == (in_features is None):
            raise ValueError("give either vocab_size (token ids) or in_features (float features)")
        self.max_len, self.per_token, self.pool = max_len, per_token, pool
        self.embed = nn.Embedding(vocab_size, d_model) if vocab_size else nn.Linear(in_features, d_model)
        self.pos = nn.Embedding(max_len, d_model)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(d_model, n_heads, d_ff, dropout, self.causal, activation)
                                    for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = self.make_head(d_model, out_features)
        self.apply(self._init_weights)
        self._shape = dict(d_model=d_model, heads=n_heads, layers=n_layers, block=max_len)

    def make_head(self, d_model: int, out_features: int) -> nn.Module:
        return nn.Linear(d_model, out_features)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)  # GPT-2's init: small, so early logits are flat
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def features(self, x: torch.Tensor, need_weights: bool = False):
        """Per-position features ``(B, T, d_model)`` and each block's attention weights (or ``None``)."""
        t = x.shape[1]
        if t > self.max_len:
            raise ValueError(f"Cannot forward sequence of length {t}, block size is only {self.max_len}")
        pos = torch.arange(t, device=x.device)
        h = self.drop(self.embed(x) + self.pos(pos))
        maps = []
        for block in self.blocks:
            h, w = block(h, need_weights)
            maps.append(w)
        return self.ln_f(h), maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.features(x)
        if not self.per_token:
            h = h.mean(dim=1) if self.pool == "mean" else h.amax(dim=1)
        return self.head(h)

    @torch.no_grad()
    def attention_maps(self, x: torch.Tensor) -> torch.Tensor:
        """Attention weights for the first example of ``x``: ``(layers, heads, T, T)``, rows sum to 1."""
        was_training = self.training
        self.eval()
        try:
            _, maps = self.features(x[:1], need_weights=True)
        finally:
            self.train(was_training)
        return torch.stack([m[0] for m in maps])

    def __repr__(self) -> str:
        params = sum(p.numel() for p in self.parameters())
        shape = ", ".join(f"{k}={v}" for k, v in self._shape.items())
        return f"{type(self).__name__}({shape}, params={params / 1e6:.2f}M)"


class TransformerEncoder(TransformerBase):
    """A bidirectional encoder: every position attends to every position (per-token or pooled output)."""

    causal = False


class GPT(TransformerBase):
    """A causal decoder for next-token prediction; the output layer is the token embedding, transposed."""

    causal = True

    def make_head(self, d_model: int, out_features: int) -> nn.Module:
        head = nn.Linear(d_model, out_features, bias=False)
        if isinstance(self.embed, nn.Embedding) and self.embed.num_embeddings == out_features:
            head.weight = self.embed.weight  # weight tying: fewer parameters, better small-data loss
        return head

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Append ``max_new_tokens`` sampled tokens to ``idx (B, T)``, feeding the last block each time."""
        for _ in range(max_new_tokens):
            logits = self(idx[:, -self.max_len:])[:, -1, :] / temperature
            if top_k:
                kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, [-1]]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            nxt = torch.multinomial(logits.softmax(dim=-1), 1, generator=generator)
            idx = torch.cat([idx, nxt], dim=1)
        return idx


# ----------------------------------------------------------------------------------- builders

def _check_hparams(d_model, n_heads, n_layers, d_ff, dropout) -> None:
    for key, value in (("d_model", d_model), ("n_heads", n_heads), ("n_layers", n_layers), ("d_ff", d_ff)):
        zoo.check_range(f"model.{key}", value, 1)
    if d_model % n_heads:
        raise ValueError(f"model.d_model={d_model} is not a multiple of model.n_heads={n_heads}: "
                         f"each head gets d_model / n_heads dimensions")
    zoo.check_range("model.dropout", dropout, 0, 1, high_open=True)


def _input_args(info: zoo.DataInfo) -> dict:
    """Token ids ``(T,)`` with ``meta["vocab_size"]``, or float features ``(T, F)``."""
    shape = tuple(info.input_shape)
    if len(shape) == 1 and "vocab_size" in info.meta:
        return {"vocab_size": int(info.meta["vocab_size"]), "max_len": shape[0]}
    if len(shape) == 2 and info.kind != "text":
        return {"in_features": shape[1], "max_len": shape[0]}
    raise ValueError(f"data input_shape={shape} (kind {info.kind}) is not a sequence a transformer reads: "
                     f"expected token ids (T,) with meta vocab_size, or features (T, F)")


def build_transformer(info: zoo.DataInfo, d_model: int = 64, n_heads: int = 4, n_layers: int = 2, d_ff: int = 256,
                      dropout: float = 0.1, activation: str = "gelu", pool: str = "mean") -> TransformerEncoder:
    _check_hparams(d_model, n_heads, n_layers, d_ff, dropout)
    if pool not in ("mean", "max"):
        raise ValueError(f"model.pool={pool!r} is not a pooling: choose mean or max")
    return TransformerEncoder(out_features=info.output_dim, **_input_args(info), d_model=d_model, n_heads=n_heads,
                              n_layers=n_layers, d_ff=d_ff, dropout=dropout, activation=activation,
                              per_token=zoo.per_position(info), pool=pool)


def build_gpt(info: zoo.DataInfo, d_model: int = 128, n_heads: int = 4, n_layers: int = 4, d_ff: int = 512,
              dropout: float = 0.1, activation: str = "gelu") -> GPT:
    _check_hparams(d_model, n_heads, n_layers, d_ff, dropout)
    return GPT(out_features=info.output_dim, **_input_args(info), d_model=d_model, n_heads=n_heads,
               n_layers=n_layers, d_ff=d_ff, dropout=dropout, activation=activation, per_token=True)


# ----------------------------------------------------------------------------------- reports

def _token_labels(x: torch.Tensor, itos) -> list[str]:
    if itos is None or x.dtype != torch.long:
        return [str(i) for i in range(x.shape[0])]
    shown = {"\n": "\\n", " ": "·", "\t": "\\t"}
    return [shown.get(itos[i], itos[i]) for i in x.tolist()]


def plot_attention(maps: torch.Tensor, labels: list[str], path: Path, title: str) -> Path:
    """One heat-map per head (columns) and layer (rows): row = query position, column = key."""
    plt = zoo.pyplot()
    layers, heads, t, _ = maps.shape
    fig, axes = plt.subplots(layers, heads, figsize=(2.4 * heads + 0.4, 2.6 * layers + 0.7), squeeze=False)
    ticks = t <= 40
    for i in range(layers):
        for j in range(heads):
            ax = axes[i][j]
            ax.imshow(maps[i, j].numpy(), cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_title(f"layer {i + 1}, head {j + 1}", fontsize=8)
            if ticks:
                ax.set_xticks(range(t), labels, fontsize=5, rotation=90)
                ax.set_yticks(range(t), labels, fontsize=5)
            else:
                ax.set_xticks([])
                ax.set_yticks([])
    axes[-1][0].set_xlabel("key (attended to)", fontsize=7)
    axes[-1][0].set_ylabel("query", fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(h_pad=1.5)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _decode(ids, itos, sep: str) -> str:
    return sep.join(itos[i] for i in ids)


def _attention_png(model: TransformerBase, splits: zoo.Splits, out_dir: Path) -> Path:
    x = splits.test.example(1)
    maps = model.attention_maps(x).float().cpu()
    labels = _token_labels(x[0].cpu(), splits.info.meta.get("itos"))
    kind = "causal" if model.causal else "bidirectional"
    return plot_attention(maps, labels, out_dir / "attention.png",
                          f"{type(model).__name__} {kind} attention, first test example")


def report_transformer(model: TransformerEncoder, splits: zoo.Splits, out_dir) -> list[Path]:
    """The attention maps of one test example, and predictions next to targets for token data."""
    out_dir = Path(out_dir)
    paths = [_attention_png(model, splits, out_dir)]
    itos, info = splits.info.meta.get("itos"), splits.info
    if itos is not None and info.task == "classification" and model.per_token:
        x, y = next(iter(splits.test.batches(8)))
        with torch.no_grad():
            pred = model(x).argmax(-1)
        sep = "" if info.meta.get("char_level") else " "
        lines = [f"# {info.meta.get('name', 'data')}: the first {len(x)} test examples; "
                 f"per-token accuracy on these {float((pred == y).float().mean()):.3f}"]
        for xi, yi, pi in zip(x.tolist(), y.tolist(), pred.tolist()):
            marks = "".join(" " if a == b else "^" for a, b in zip(pi, yi))
            lines += [f"input:   {_decode(xi, itos, sep)}", f"target:  {_decode(yi, itos, sep)}",
                      f"predict: {_decode(pi, itos, sep)}",
                      f"errors:  {(' '.join(marks) if sep else marks).rstrip() or 'none'}", ""]
        path = out_dir / "predictions.txt"
        path.write_text("\n".join(lines), encoding="utf-8")
        paths.append(path)
    return paths


def report_gpt(model: GPT, splits: zoo.Splits, out_dir, n_chars: int = 400, temperature: float = 0.8) -> list[Path]:
    """The attention maps of one test example, and ``n_chars`` characters sampled after a test prompt."""
    out_dir = Path(out_dir)
    paths = [_attention_png(model, splits, out_dir)]
    itos, meta = splits.info.meta.get("itos"), splits.info.meta
    if itos is not None:
        prompt = splits.test.example(1)
        g = torch.Generator(device=prompt.device).manual_seed(0)
        out = model.generate(prompt, n_chars, temperature=temperature, generator=g)[0].tolist()
        sep = "" if meta.get("char_level") else " "
        unit = "characters" if meta.get("char_level") else "tokens"
        head = [f"# {n_chars} {unit} sampled by gpt (temperature {temperature}) after a prompt from the test split"]
        if "unigram_nats" in meta:
            head.append(f"# unigram baseline of the corpus: {meta['unigram_nats']:.4f} nats per character")
        text = "\n".join(head) + "\n\n--- prompt ---\n" + _decode(out[:prompt.shape[1]], itos, sep) + \
            "\n--- generated ---\n" + _decode(out[prompt.shape[1]:], itos, sep) + "\n"
        path = out_dir / "sample.txt"
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


# ----------------------------------------------------------------------------------- registration

@zoo.hookimpl
def zoo_architectures():
    smoke = {"d_model": 16, "n_heads": 2, "n_layers": 1, "d_ff": 32}
    return [
        zoo.Architecture(
            name="transformer", family="transformer", kinds=("text", "sequence"),
            tasks=("classification", "regression"), build=build_transformer, report=report_transformer,
            description="bidirectional self-attention encoder: per-token or pooled sequence prediction",
            smoke=smoke,
        ),
        zoo.Architecture(
            name="gpt", family="transformer", kinds=("text",), tasks=("next_token",),
            build=build_gpt, report=report_gpt,
            description="causal self-attention decoder (nanoGPT-like): next-token prediction and sampling",
            smoke=smoke,
        ),
    ]
