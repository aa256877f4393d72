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


def build_sentencepiece_checkpoint(out_dir: Path, seed: int = 5, *, vocab_size: int = 1200) -> Path:
    """A checkpoint whose tokenizer is a SentencePiece unigram model, as DeBERTa-v3's (and so the published
    GLiNER2 checkpoints') are: trained here, offline, with the ``sentencepiece`` package on a deterministic
    faker corpus, with DeBERTa-v3's special pieces ([PAD]=0, [CLS]=1, [SEP]=2, [UNK]=3, [MASK]), and loaded
    into transformers' DeBERTa-v2 tokenizer from its pieces and scores, which is how transformers converts
    deberta-v3's ``spm.model``. Cached: an ``out_dir`` with a config.json is returned as it is."""
    import io

    import sentencepiece
    from faker import Faker
    from transformers import DebertaV2Tokenizer

    from gliner_server.random_checkpoint import build_deberta_checkpoint

    if (out_dir / "config.json").is_file():
        return out_dir
    fake = Faker(["en_US", "de_DE", "fr_FR"])
    Faker.seed(seed)
    corpus = [fake.sentence(nb_words=12) for _ in range(3000)] + [fake.name() + " works for " + fake.company()
                                                                  + " in " + fake.city() + "." for _ in range(2000)]
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus), model_writer=model, vocab_size=vocab_size, model_type="unigram",
        character_coverage=1.0, pad_id=0, bos_id=1, eos_id=2, unk_id=3, pad_piece="[PAD]", bos_piece="[CLS]",
        eos_piece="[SEP]", unk_piece="[UNK]", user_defined_symbols=["[MASK]"],
        minloglevel=2, num_threads=1)
    processor = sentencepiece.SentencePieceProcessor(model_proto=model.getvalue())
    vocab = [(processor.id_to_piece(i), processor.get_score(i)) for i in range(processor.get_piece_size())]
    tokenizer = DebertaV2Tokenizer(vocab=vocab, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    (out_dir.parent / f"{out_dir.name}.spm.model").write_bytes(model.getvalue())
    return build_deberta_checkpoint(out_dir, seed=seed, tokenizer=tokenizer)
