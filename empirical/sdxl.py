"""Stable Diffusion XL as the base model (``--pretrained`` on an SDXL folder): what differs from SD 1.x/2.x.

SDXL's UNet is conditioned on more than token states (diffusers' ``StableDiffusionXLPipeline`` and its training
script ``train_text_to_image_sdxl.py``):

- two CLIP text encoders; the cross-attention context is c = [h¹₋₂ ; h²₋₂], both encoders' penultimate hidden
  states concatenated (:class:`empirical.text_encoder.DualTextEncoder`);
- an *added* embedding of the second encoder's projected pooled output and six micro-conditioning "time ids"
  (original size, crop top-left corner, target size): ``added_cond_kwargs = {"text_embeds", "time_ids"}``.
  Here images are square S-pixel renders, never cropped: time ids (S, S, 0, 0, S, S) (:func:`time_ids`).

Training, sampling and cross-attention capture are otherwise those of SD: the same DDPM objective on the folder's
own schedule, a DDIM sampler, attention processors on the UNet's cross-attention layers. One choice differs from
the pipeline's default: the unconditional branch of classifier-free guidance encodes the empty prompt (as the
training script's caption dropout does) instead of SDXL's zeroed embeddings (``force_zeros_for_empty_prompt``).
"""

from __future__ import annotations

import json
from pathlib import Path

from implosion_base.errors import InputError, UNLOADABLE, first_line

#: model_index.json's class name of an SDXL folder.
SDXL_CLASS = "StableDiffusionXLPipeline"
#: The components an SDXL folder must hold beyond SD's.
XL_PARTS: tuple[str, ...] = ("text_encoder_2", "tokenizer_2")


def is_sdxl_folder(folder: Path) -> bool:
    """Whether ``folder`` is an SDXL pipeline folder (its model_index.json names StableDiffusionXLPipeline)."""
    try:
        index = json.loads((Path(folder) / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):
        return False
    return isinstance(index, dict) and index.get("_class_name") == SDXL_CLASS


def time_ids(size: int):
    """SDXL's micro-conditioning for an uncropped square ``size``-pixel image: (size, size, 0, 0, size, size)."""
    import torch

    return torch.tensor([size, size, 0, 0, size, size], dtype=torch.float32)


def added_conditions(pooled, ids, batch: int) -> dict:
    """``added_cond_kwargs`` of a batch: the pooled text embeddings (B, P) and the time ids repeated (B, 6)."""
    return {"text_embeds": pooled, "time_ids": ids.to(pooled.device, pooled.dtype).expand(batch, -1)}


def load_xl_pipeline(folder: Path, *, device: str = "cpu", variant: str | None = None):
    """A local SDXL folder as ``StableDiffusionXLPipeline`` (local files, safetensors, no remote code, float32);
    the folder is checked first as an SD folder is (:func:`empirical.model.check_pipeline_folder`), with its
    second text encoder and tokenizer."""
    import torch

    from empirical.model import check_pipeline_folder, quiet_transformers

    folder = Path(folder)
    check_pipeline_folder(folder, variant)
    for part in XL_PARTS:
        if not (folder / part).is_dir():
            raise InputError(f"{folder} is an SDXL folder without its {part}/ component")
    with quiet_transformers():
        from diffusers import StableDiffusionXLPipeline
    try:
        pipe = StableDiffusionXLPipeline.from_pretrained(folder, local_files_only=True, use_safetensors=True,
                                                         variant=variant, dtype=torch.float32,
                                                         add_watermarker=False)
    except UNLOADABLE as exc:
        raise InputError(f"cannot load the SDXL pipeline in {folder}: {type(exc).__name__}: "
                         f"{first_line(exc)[:300]}") from None
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def assemble_xl_pipeline(vae, unet, text_encoder, scheduler_config: dict | None = None):
    """A ``StableDiffusionXLPipeline`` from our parts (``text_encoder`` a DualTextEncoder), with a DDIM sampler on
    the training schedule and the empty prompt's encoding as the unconditional branch (module docstring)."""
    from empirical.model import noise_scheduler, quiet_transformers

    with quiet_transformers():
        from diffusers import DDIMScheduler, StableDiffusionXLPipeline

    scheduler = DDIMScheduler.from_config(noise_scheduler(scheduler_config).config)
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=text_encoder.model, text_encoder_2=text_encoder.model_2,
                                     tokenizer=text_encoder.tokenizer, tokenizer_2=text_encoder.tokenizer_2,
                                     unet=unet, scheduler=scheduler, force_zeros_for_empty_prompt=False,
                                     add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe
