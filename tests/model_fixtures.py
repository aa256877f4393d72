"""Model artefacts for the registry tests: LoRA adapters and "fine-tuned" checkpoints.

Built locally with random weights, like the checkpoints in conftest.py.
"""
from __future__ import annotations

from pathlib import Path

# The gliner2 trainer's default LoRA targets: the encoder and every task head.
TRAINER_TARGETS = ["encoder", "span_rep", "classifier", "count_embed", "count_pred"]


def build_lora_adapter(base_checkpoint: Path, out_dir: Path, seed: int, *, r: int = 4, alpha: float = 8.0,
                       scale: float = 0.3, targets: list[str] = TRAINER_TARGETS) -> Path:
    """A LoRA adapter over ``base_checkpoint``, saved as the gliner2 trainer saves one.

    LoRA's B matrices start at zero (a fresh adapter is a no-op), so they are
    filled with random values, as training would. Layers under ``out_project``
    are left at zero: the library's factorised span scorer reads their weights
    directly, bypassing LoRA, so training never moves them, and a delta there
    would make the library's unmerged adapter disagree with its merged one.
    """
    import torch
    from gliner2 import AutoExtractor
    from gliner2.training.lora import LoRALayer

    # PEFT draws the A matrices from torch's global generator: seed it, so the adapter
    # depends on ``seed`` only, not on what else ran in this process before.
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        peft_model = AutoExtractor.from_pretrained(str(base_checkpoint)).apply_lora(r=r, alpha=alpha,
                                                                                    targets=targets)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, module in peft_model.named_modules():
            if isinstance(module, LoRALayer) and "out_project" not in name:
                for lora_b in module.lora_B.values():
                    lora_b.weight.copy_(torch.randn(lora_b.weight.shape, generator=generator) * scale)
    peft_model.save_pretrained(str(out_dir))  # PEFT format: adapter_config.json + adapter_model.safetensors
    return out_dir


def build_fine_tuned_checkpoint(out_dir: Path, seed: int) -> Path:
    """A full checkpoint standing for a fine-tuning job's output: different random weights."""
    from gliner_server.random_checkpoint import build_deberta_checkpoint

    return build_deberta_checkpoint(out_dir, seed=seed)
