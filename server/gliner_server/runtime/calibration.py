"""Calibration inputs for the ``int8-ptq`` encoder (NNCF post-training quantization).

Full quantization (int8 activations as well as weights) needs the ranges the
encoder's activations take on real inputs. Those inputs are what the library
feeds the encoder: the schema prompt (``[P] label [E] ...``) and the text,
tokenised and padded by the library's own collator. So calibration does not
tokenise anything itself: it runs the library's ``batch_extract`` over a fixed
set of (text, schema) pairs and records the ``input_ids`` / ``attention_mask``
that reach ``model.encoder`` (batch 1, as most requests run, and a few padded
batches, as the request batcher forms them).

The texts are written in the styles of the agreement corpus
(``bench/data/agreement_corpus.jsonl``: news, reviews, technical, finance, biomedical,
legal, e-mail, social media, other languages; short to ~250 tokens) but are
not the same texts, so the agreement it measures is on held-out text.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

logger = logging.getLogger(__name__)

CALIBRATION_TEXTS: tuple[str, ...] = (
    "Amazon said on Thursday it would open a new logistics hub near Leipzig, creating about 1,000 jobs by 2026.",
    "The mayor of Chicago, Brandon Johnson, unveiled a $16.6 billion budget that avoids property tax increases.",
    "Heavy rain caused the Thames to burst its banks in Oxford, flooding dozens of homes and closing the A34.",
    "Spotify will cut about 1,500 jobs, roughly 17% of its workforce, chief executive Daniel Ek told staff.",
    "Scientists at CERN reported the first direct observation of antimatter falling under gravity.",
    "The new Pixel 8 feels fast and the screen is gorgeous, but the battery barely makes it to dinner time.",
    "Worst customer service ever. I called Comcast four times about the outage and nobody called me back.",
    "Cosy little café in Lisbon with the best pastel de nata we had all week; prices are fair and staff speak English.",
    "The Dyson V15 picks up everything, although the bin is small and it is heavier than my old Shark.",
    "Docker build fails with 'no space left on device' on the GitHub Actions runner after the cache grew to 14 GB.",
    "Set the JVM flag -Xmx4g and enable G1GC to reduce the pause times we saw on the Elasticsearch nodes.",
    "Rust 1.75 stabilises async fn in traits, which removes the need for the async-trait crate in many libraries.",
    "The TLS handshake between the load balancer and the backend fails because the certificate expired on 2 May.",
    "JPMorgan Chase posted record annual profit of $49.6 billion, helped by higher interest income and First Republic.",
    "Brent crude fell below $75 a barrel after OPEC+ members failed to agree on deeper production cuts.",
    "Moody's downgraded the outlook on US sovereign debt to negative, citing large fiscal deficits.",
    "Novak Djokovic beat Carlos Alcaraz in straight sets to win his 24th Grand Slam title in Melbourne.",
    "Golden State Warriors guard Stephen Curry scored 46 points in a 121-115 win over the Sacramento Kings.",
    "Participants treated with semaglutide lost an average of 15% of body weight over 68 weeks.",
    "A 45-year-old woman with a history of migraine was prescribed sumatriptan 50 mg as needed for acute attacks.",
    "Loss-of-function variants in the CFTR gene cause cystic fibrosis, which affects the lungs and pancreas.",
    "The licensee shall keep all confidential information secret for a period of five years after termination.",
    "This lease commences on 1 June 2024 and ends on 31 May 2025 unless renewed by mutual written agreement.",
    "Hi Marco, the invoice for the October consulting work is attached; could you approve it before Friday? Anna",
    "Your flight BA 287 from London Heathrow to San Francisco on 12 April has been delayed by two hours.",
    "Please remember the fire drill tomorrow at 11am; everyone should gather in the car park on Elm Street.",
    "omw to the stadium with jake lakers vs celtics tonight lets gooo",
    "why does my iphone keep disconnecting from the car bluetooth after ios 17 update smh",
    "Le président Emmanuel Macron a reçu le chancelier Olaf Scholz à l'Élysée mardi soir.",
    "Der Vorstand von Siemens hat in München einen neuen Finanzchef ernannt.",
    "La empresa Inditex, dueña de Zara, abrió una nueva tienda en Ciudad de México.",
    "東京証券取引所でトヨタ自動車の株価が過去最高値を更新した。",
    "Björk performed at the Harpa concert hall in Reykjavík — tickets sold out in 12 minutes 🎶.",
    "Call me tomorrow.",
    "Battery died again",
    "Acme Corp hired Jane Doe.",
    "Shares of Intel dropped 9% on Friday after the company warned that revenue for the current quarter would fall "
    "short of expectations. Chief executive Pat Gelsinger said demand for data-centre processors remained weak as "
    "cloud providers shifted spending towards accelerators for artificial intelligence, a market led by Nvidia. The "
    "company is building new factories in Ohio and Magdeburg, Germany, with the help of government subsidies, and "
    "expects its foundry business to break even by the end of 2027. Analysts at Bernstein said the outlook raised "
    "fresh questions about how Intel would fund its expansion while keeping its dividend.",
    "The night before the outage, an automated job rotated the database credentials but did not restart the worker "
    "pods, which kept using cached connections until they were recycled at 02:00. From then on every new connection "
    "was refused, the job queue grew to 180,000 messages, and notifications to customers were delayed by up to four "
    "hours. The fix was to restart the workers; the follow-up is to make the rotation job trigger a rolling restart "
    "and to alert when the queue grows faster than it drains for more than ten minutes.",
)

# Schemas as the library's dict form, one per task mix; paired with texts round-robin.
CALIBRATION_SCHEMAS: tuple[dict, ...] = (
    {"entities": ["person", "organization", "location", "date"]},
    {"entities": {"product": "A product or model name", "company": "A business"}},
    {"classifications": [{"task": "sentiment", "labels": ["positive", "negative", "neutral"]}]},
    {"classifications": [{"task": "topics", "labels": ["business", "technology", "health", "sports", "law"],
                          "multi_label": True}]},
    {"structures": [{"name": "event", "fields": [{"name": "what", "dtype": "str"}, {"name": "who", "dtype": "list"},
                                                 {"name": "severity", "dtype": "str",
                                                  "choices": ["low", "high"]}]}]},
    {"relations": ["works_for", "located_in"]},
    {"entities": ["person", "organization"], "relations": ["works_for"],
     "classifications": [{"task": "tone", "labels": ["factual", "opinion"]}]},
)


def _builder(model, spec: dict):
    schema = model.create_schema()
    if spec.get("entities"):
        schema = schema.entities(spec["entities"])
    for cls in spec.get("classifications", []):
        options = {k: v for k, v in cls.items() if k not in ("task", "labels")}
        schema = schema.classification(cls["task"], cls["labels"], **options)
    for structure in spec.get("structures", []):
        builder = schema.structure(structure["name"])
        for field in structure["fields"]:
            builder = builder.field(field["name"], dtype=field.get("dtype", "list"), choices=field.get("choices"))
        schema = builder.schema
    if spec.get("relations"):
        schema = schema.relations(spec["relations"])
    return schema


def capture_encoder_inputs(model, run: Callable[[], object]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Run ``run()`` and return every ``(input_ids, attention_mask)`` that reached ``model.encoder``."""
    captured: list[tuple[np.ndarray, np.ndarray]] = []

    def record(_module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)
        ids = ids.detach().cpu().numpy().astype(np.int64)
        mask = np.ones_like(ids) if mask is None else mask.detach().cpu().numpy().astype(np.int64)
        captured.append((ids, mask))

    handle = model.encoder.register_forward_pre_hook(record, with_kwargs=True)
    try:
        run()
    finally:
        handle.remove()
    return captured


def calibration_inputs(model, texts=CALIBRATION_TEXTS, schemas=CALIBRATION_SCHEMAS, *,
                       batched: int = 4) -> list[tuple[np.ndarray, np.ndarray]]:
    """Encoder inputs for calibrating ``model``'s encoder: every text at batch 1, then padded batches.

    ``model`` is a loaded gliner2 model (its encoder still PyTorch or already
    OpenVINO; either works). Each text is paired with one schema, round-robin;
    ``batched`` more passes feed the texts ``batch_size=8`` at a time with
    mixed schemas, so padding (``attention_mask`` zeros) is calibrated too.
    """
    pairs = [(text, _builder(model, schemas[i % len(schemas)])) for i, text in enumerate(texts)]

    def run():
        for text, schema in pairs:
            model.batch_extract([text], schema, batch_size=1, threshold=0.5)
        for start in range(0, min(len(pairs), 8 * batched), 8):
            chunk = pairs[start:start + 8]
            model.batch_extract([t for t, _ in chunk], [s for _, s in chunk], batch_size=8, threshold=0.5)

    was_training = model.training
    model.eval()
    try:
        captured = capture_encoder_inputs(model, run)
    finally:
        model.train(was_training)
    logger.info("captured %d calibration inputs for int8-ptq", len(captured))
    return captured
