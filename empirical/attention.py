"""Cross-attention maps of a diffusers text-to-image pipeline, captured during generation (DAAM-style).

A cross-attention layer of the UNet maps each latent pixel x to a distribution over the prompt's tokens,
P_ℓ,h,τ(t | x) = softmax_t(q_x·k_t/√d) in layer ℓ, head h and denoising step τ. The map of token t is

    M_t(x) = mean over layers ℓ, heads h, steps τ of  up(P_ℓ,h,τ(t | ·))(x),

each layer's map bilinearly upsampled to the image size first (layers work at different resolutions), as DAAM
does (Tang et al. 2023). With classifier-free guidance only the conditional half of the batch is recorded.

PyTorch-2's fused attention never materialises P, so :func:`recording` swaps the processors of the
cross-attention layers only (``attn2`` in diffusers' transformer blocks; self-attention keeps its fast path) for
:class:`CrossAttentionRecorder`, which computes the same output from explicit probabilities and adds their head
mean to an :class:`AttentionStore`; the original processors come back on exit, also after an error.

Statistics of one prompt whose concept occupies tokens C (see :func:`attention_statistics`), with
m(x) = Σ_{t∈C} M_t(x) over the N pixels and p = m / Σ_x m:

    concept_mass   = (1/N) Σ_x m(x)                      the attention mass the concept's tokens receive,
    concept_share  = Σ_x m(x) / Σ_x Σ_{t∈W} M_t(x)        the same among the prompt's word tokens W (no special
                                                         or padding tokens),
    entropy        = −Σ_x p(x) log p(x) / log N           1 = spread evenly over the image, 0 = one pixel,
    concentration  = Σ of p over its top ⌈N/10⌉ pixels     0.1 = uniform, 1 = all mass in a tenth of the image.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np

from implosion_base.errors import InputError

STATISTICS: tuple[str, ...] = ("concept_mass", "concept_share", "entropy", "concentration")


@dataclass
class AttentionStore:
    """Running sums of head-averaged cross-attention probabilities of the conditional prompts, per latent
    resolution: ``sums[hw]`` has shape (B, hw, T); ``counts[hw]`` counts the (layer, step) calls added."""

    sums: dict[int, "object"] = field(default_factory=dict)
    counts: dict[int, int] = field(default_factory=dict)

    def add(self, probs) -> None:
        """Add one call's probabilities (B, hw, T), already averaged over heads, on the CPU in float32."""
        hw = int(probs.shape[1])
        p = probs.detach().float().cpu()
        if hw in self.sums:
            if self.sums[hw].shape != p.shape:
                raise InputError("the batch changed while recording attention; use one store per batch")
            self.sums[hw] += p
            self.counts[hw] += 1
        else:
            self.sums[hw] = p.clone()
            self.counts[hw] = 1

    def maps(self, size: int) -> np.ndarray:
        """Token maps (B, T, size, size): each resolution's mean over its calls, upsampled bilinearly to
        ``size``, then averaged over resolutions weighted by their number of calls (= mean over all calls)."""
        import torch.nn.functional as F

        if not self.sums:
            raise InputError("no cross-attention was recorded (does the UNet have cross-attention layers?)")
        total = sum(self.counts.values())
        out = None
        for hw, s in self.sums.items():
            side = int(round(math.sqrt(hw)))
            if side * side != hw:
                raise InputError(f"cannot place {hw} attention positions on a square grid")
            b, _, t = s.shape
            grid = (s / self.counts[hw]).permute(0, 2, 1).reshape(b, t, side, side)
            up = F.interpolate(grid, size=(size, size), mode="bilinear", align_corners=False)
            term = up * (self.counts[hw] / total)
            out = term if out is None else out + term
        return out.numpy()


class CrossAttentionRecorder:
    """An attention processor that computes softmax(QKᵀ/√d)·V explicitly (diffusers' ``AttnProcessor`` maths)
    and, for cross-attention calls, adds the head-averaged probabilities of the last ``keep`` batch rows (the
    conditional half under classifier-free guidance) to ``store``."""

    def __init__(self, store: AttentionStore, keep: int | None = None):
        self.store = store
        self.keep = keep

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 *args, **kwargs):
        import torch

        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
        cross = encoder_hidden_states is not None
        batch_size, sequence_length, _ = (hidden_states if not cross else encoder_hidden_states).shape
        attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if not cross:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.head_to_batch_dim(attn.to_k(encoder_hidden_states))
        value = attn.head_to_batch_dim(attn.to_v(encoder_hidden_states))
        query = attn.head_to_batch_dim(query)
        probs = attn.get_attention_scores(query, key, attention_mask)  # (B·heads, hw, T)
        if cross:
            b = hidden_states.shape[0]
            per_head = probs.reshape(b, attn.heads, probs.shape[1], probs.shape[2]).mean(dim=1)
            keep = b if self.keep is None else min(self.keep, b)
            self.store.add(per_head[b - keep:])
        hidden_states = attn.batch_to_head_dim(torch.bmm(probs, value))
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def cross_attention_names(unet) -> list[str]:
    """Processor names of the UNet's cross-attention layers (``…attn2.processor`` in diffusers' blocks)."""
    names = []
    for name, module in unet.named_modules():
        if getattr(module, "is_cross_attention", False) and hasattr(module, "processor"):
            names.append(f"{name}.processor")
    return names


@contextmanager
def recording(unet, store: AttentionStore, keep: int | None = None) -> Iterator[AttentionStore]:
    """Within the block, the UNet's cross-attention layers record into ``store``; the original processors are
    restored on exit (also after an error)."""
    original = dict(unet.attn_processors)
    cross = set(cross_attention_names(unet))
    if not cross:
        raise InputError("the UNet has no cross-attention layers to record")
    recorder = CrossAttentionRecorder(store, keep)
    unet.set_attn_processor({name: (recorder if name in cross else proc) for name, proc in original.items()})
    try:
        yield store
    finally:
        unet.set_attn_processor(original)


def token_positions(tokenizer, prompt: str, phrase: str, length: int) -> list[int]:
    """Positions of ``phrase``'s tokens within ``prompt`` tokenised as the pipeline does (padded/truncated to
    ``length``): the tokens whose character spans overlap the phrase's last occurrence in the prompt (fast
    tokenizers), else the last match of the phrase's token ids. Empty if the phrase is not in the prompt."""
    start = prompt.lower().rfind(phrase.lower())
    if start < 0 or not phrase:
        return []
    end = start + len(phrase)
    try:
        enc = tokenizer(prompt, padding="max_length", truncation=True, max_length=length,
                        return_offsets_mapping=True)
        spans = enc["offset_mapping"]
        return [i for i, (a, b) in enumerate(spans) if b > a and a < end and b > start]
    except (NotImplementedError, TypeError, ValueError, KeyError):
        ids = tokenizer(prompt, padding="max_length", truncation=True, max_length=length)["input_ids"]
        sub = tokenizer(phrase, add_special_tokens=False)["input_ids"]
        for s in range(len(ids) - len(sub), -1, -1):
            if sub and ids[s:s + len(sub)] == sub:
                return list(range(s, s + len(sub)))
        return []


def word_positions(tokenizer, prompt: str, length: int) -> list[int]:
    """Positions of the prompt's word tokens (not special, not padding) in the pipeline's tokenisation."""
    enc = tokenizer(prompt, padding="max_length", truncation=True, max_length=length)
    special = set(tokenizer.all_special_ids)
    return [i for i, t in enumerate(enc["input_ids"]) if t not in special]


def attention_statistics(maps: np.ndarray, concept_tokens: Sequence[Sequence[int]],
                         word_tokens: Sequence[Sequence[int]]) -> dict[str, np.ndarray]:
    """Per-prompt statistics (module docstring) of token maps (B, T, H, W). Prompts whose concept has no token
    get NaN."""
    b, _, h, w = maps.shape
    n = h * w
    out = {k: np.full(b, np.nan) for k in STATISTICS}
    top = max(1, math.ceil(n / 10))
    for i in range(b):
        c = list(concept_tokens[i])
        if not c:
            continue
        m = maps[i, c].sum(axis=0).reshape(-1).astype(np.float64)
        words = maps[i, list(word_tokens[i])].sum() if len(word_tokens[i]) else np.nan
        total = m.sum()
        out["concept_mass"][i] = total / n
        out["concept_share"][i] = total / words if words > 0 else np.nan
        if total > 0:
            p = m / total
            nz = p[p > 0]
            out["entropy"][i] = float(-(nz * np.log(nz)).sum() / math.log(n)) if n > 1 else 0.0
            out["concentration"][i] = float(np.sort(p)[::-1][:top].sum())
    return out


@dataclass
class AttentionResult:
    """Images (B, H, W, 3) uint8, token maps (B, T, H, W), the concept's token positions per prompt and the
    statistics per prompt."""

    images: np.ndarray
    maps: np.ndarray
    concept_tokens: list[list[int]]
    statistics: dict[str, np.ndarray]

    def concept_maps(self) -> np.ndarray:
        """(B, H, W): each prompt's map summed over its concept's tokens (zeros where it has none)."""
        out = np.zeros((self.maps.shape[0], *self.maps.shape[2:]), np.float32)
        for i, c in enumerate(self.concept_tokens):
            if c:
                out[i] = self.maps[i, c].sum(axis=0)
        return out


def generate_with_attention(pipe, prompts: Sequence[str], seeds: Sequence[int], phrases: Sequence[str], *,
                            steps: int = 20, guidance: float = 4.0, batch_size: int = 256) -> AttentionResult:
    """Generate ``prompts[i]`` from noise seeded by ``seeds[i]`` (as :func:`empirical.model.generate`, same
    images) while recording cross-attention; ``phrases[i]`` is the concept whose tokens are measured."""
    import torch

    if not (len(prompts) == len(seeds) == len(phrases)):
        raise InputError("generate_with_attention needs one seed and one concept phrase per prompt")
    tok = pipe.tokenizer
    length = int(tok.model_max_length)
    images, maps = [], []
    for i in range(0, len(prompts), batch_size):
        chunk = list(prompts[i:i + batch_size])
        gens = [torch.Generator(device="cpu").manual_seed(int(s)) for s in seeds[i:i + batch_size]]
        store = AttentionStore()
        with recording(pipe.unet, store, keep=len(chunk)), torch.no_grad():
            imgs = pipe(chunk, num_inference_steps=steps, guidance_scale=guidance, generator=gens,
                        output_type="np").images
        images.append(np.clip(np.round(imgs * 255), 0, 255).astype(np.uint8))
        maps.append(store.maps(imgs.shape[1]))
    concept = [token_positions(tok, p, c, length) for p, c in zip(prompts, phrases)]
    words = [word_positions(tok, p, length) for p in prompts]
    all_maps = np.concatenate(maps)
    return AttentionResult(np.concatenate(images), all_maps, concept,
                           attention_statistics(all_maps, concept, words))


def overlay(image: np.ndarray, heat: np.ndarray, *, alpha: float = 0.55, cmap: str = "jet") -> np.ndarray:
    """``image`` (H, W, 3) uint8 blended with ``heat`` (H, W) normalised to [0, 1] through ``cmap``."""
    from matplotlib import colormaps

    h = np.asarray(heat, np.float64)
    span = h.max() - h.min()
    h = (h - h.min()) / span if span > 0 else np.zeros_like(h)
    colour = colormaps[cmap](h)[..., :3] * 255.0
    return np.clip((1 - alpha) * image.astype(np.float64) + alpha * colour, 0, 255).astype(np.uint8)
