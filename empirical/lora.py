"""LoRA adapters on a frozen UNet (the ``lora`` scenario): peft LoRA, W + (α/r)·BA on the attention projections,
Gaussian A and zero B at the start (training starts from the base model exactly); the adapters saved as diffusers'
``pytorch_lora_weights.safetensors`` (loadable with ``pipe.load_lora_weights``), or fused into a plain UNet."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from empirical.seeding import seeded
from implosion_base.validate import check_scalar
from implosion_base.errors import InputError
from implosion_base.files import atomic_path


@dataclass(frozen=True)
class LoraSettings:
    """LoRA adapters on the UNet's attention projections: rank ``rank``, scale ``alpha``/``rank`` (alpha defaults
    to the rank), Gaussian A and zero B at the start, so training starts from the pretrained model exactly."""

    rank: int = 8
    alpha: float | None = None
    targets: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        check_scalar(self.rank, "LoRA rank", low=1, integer=True)


def add_lora(unet, cfg: LoraSettings, *, seed: int):
    """Freeze ``unet`` and add LoRA adapters (seeded initialisation; the global RNG is left untouched)."""
    from peft import LoraConfig

    cfg.validate()
    unet.requires_grad_(False)
    with seeded(seed):
        unet.add_adapter(LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha if cfg.alpha is not None else cfg.rank,
                                    init_lora_weights="gaussian", target_modules=list(cfg.targets)))
    return unet


LORA_WEIGHTS = "pytorch_lora_weights.safetensors"


def save_lora_adapter(unet, folder: Path) -> Path:
    """Write the LoRA adapters of ``unet`` (with the weights it carries, e.g. EMA) as diffusers'
    ``folder/pytorch_lora_weights.safetensors`` with their rank/alpha metadata — loadable onto the base model's
    pipeline with ``pipe.load_lora_weights(folder)`` — atomically (a temporary folder, then one rename)."""

    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    if not getattr(unet, "_hf_peft_config_loaded", False):
        raise InputError("this UNet carries no LoRA adapter to save")
    folder = Path(folder)
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    with atomic_path(folder) as tmp:
        # an SDXL UNet (SDXL's added text-time embedding) is saved by the SDXL pipeline's writer
        pipeline = (StableDiffusionXLPipeline if unet.config.get("addition_embed_type") == "text_time"
                    else StableDiffusionPipeline)
        pipeline.save_lora_weights(tmp, unet_lora_layers=layers, safe_serialization=True,
                                   unet_lora_adapter_metadata=unet.peft_config["default"].to_dict())
    return folder / LORA_WEIGHTS


def merged(unet):
    """A copy of a LoRA-adapted UNet with the adapters fused into its weights and removed (a plain UNet that
    saves as a standard diffusers folder); other UNets are returned as they are."""
    import copy

    if not getattr(unet, "_hf_peft_config_loaded", False):
        return unet
    other = copy.deepcopy(unet)
    other.fuse_lora()
    other.unload_lora()
    return other
