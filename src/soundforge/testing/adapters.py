"""Random LoRA adapters made with PEFT for a model built in a test (or a benchmark), saved as their writers save them:
diffusers' `save_lora_weights` for a pipeline's transformer, PEFT's `save_pretrained` for a transformers model.

The LoRA's B matrices are random too (`init_lora_weights=False`), so an adapter changes the output from its first
step: a LoRA as PEFT initialises it for training (B = 0) would change nothing and prove nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

#: The attention projections of ACE-Step's DiT (`AceStepTransformer1DModel`) that its LoRA trainer adapts.
ACE_STEP_TARGETS = ("to_q", "to_k", "to_v")
#: MusicGen's decoder attention projections (transformers' `MusicgenAttention`).
MUSICGEN_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")


def card(license: str | None, base_model: str = "") -> str:
    """A model card's front matter naming `license` (and the base model), as the hub writes one."""
    lines = ["---"]
    if license:
        lines.append(f"license: {license}")
    if base_model:
        lines.append(f"base_model: {base_model}")
    return "\n".join([*lines, "---", "", "A LoRA made for a test.", ""])


def build_pipeline_lora(
    pipeline: Any,
    folder: str | os.PathLike[str],
    *,
    rank: int = 4,
    targets: tuple[str, ...] = ACE_STEP_TARGETS,
    seed: int = 0,
    license: str | None = "mit",
) -> Path:
    """A random LoRA for `pipeline.transformer`, written to `folder` by the pipeline's own `save_lora_weights`
    (`pytorch_lora_weights.safetensors`), with a card naming `license` (None: no licence field). The pipeline is
    left as it was."""
    import torch
    from peft import LoraConfig, get_peft_model_state_dict

    transformer = pipeline.transformer
    torch.manual_seed(seed)
    config = LoraConfig(r=rank, lora_alpha=rank, target_modules=list(targets), init_lora_weights=False)
    transformer.add_adapter(config, adapter_name="made_for_a_test")
    try:
        layers = get_peft_model_state_dict(transformer, adapter_name="made_for_a_test")
    finally:
        transformer.delete_adapters("made_for_a_test")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    type(pipeline).save_lora_weights(out, transformer_lora_layers=layers)
    (out / "README.md").write_text(card(license), "utf-8")
    return out


def build_peft_lora(
    model: Any,
    folder: str | os.PathLike[str],
    *,
    rank: int = 4,
    targets: tuple[str, ...] = MUSICGEN_TARGETS,
    seed: int = 0,
    license: str | None = "mit",
) -> Path:
    """A random LoRA for a transformers model, written by PEFT's `save_pretrained` (`adapter_config.json` and
    `adapter_model.safetensors`), with a card naming `license`. `model` is left as it was."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    config = LoraConfig(r=rank, lora_alpha=rank, target_modules=list(targets), init_lora_weights=False)
    wrapped = get_peft_model(model, config)
    out = Path(folder)
    try:
        wrapped.save_pretrained(out)
    finally:
        wrapped.unload()
    (out / "README.md").write_text(card(license), "utf-8")
    return out


def build_lora_for(
    provider: str, model_folder: str | os.PathLike[str], folder: str | os.PathLike[str], **options: Any
) -> Path:
    """A random LoRA for the model a provider runs from `model_folder`, in the format that provider's engine loads:
    diffusers' for `ace-step`, PEFT's for `musicgen` (the contract suite's adapter case)."""
    if provider == "ace-step":
        from diffusers import AceStepPipeline

        return build_pipeline_lora(AceStepPipeline.from_pretrained(model_folder), folder, **options)
    if provider == "musicgen":
        from transformers import MusicgenForConditionalGeneration

        return build_peft_lora(MusicgenForConditionalGeneration.from_pretrained(model_folder), folder, **options)
    raise ValueError(f"no LoRA builder for {provider!r}")
