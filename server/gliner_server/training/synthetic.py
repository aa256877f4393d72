"""Synthetic training and evaluation data for the demo GLiNER2 checkpoint.

The demo checkpoint (a small MiniLM encoder) is trained offline, for a few epochs on a
couple of CPU cores, so that it gives sensible answers out of the box. This module makes
the data it is trained and judged on: short English sentences (mostly 8-30 words), each
a record in the gliner2 library's training JSONL form::

    {"input": "Maria Lopez joined Brightwave Labs in Denver on March 3, 2024.",
     "output": {"entities": {"person": ["Maria Lopez"], "company": ["Brightwave Labs"],
                             "location": ["Denver"], "date": ["March 3, 2024"], "price": []},
                "relations": [{"works_for": {"head": "Maria Lopez", "tail": "Brightwave Labs"}}]}}

What it generates
-----------------
* **Entities** (:data:`ENTITY_LABELS`): people (several Faker locales), companies (known
  brands, invented names and Faker names), cities and countries, products (phones,
  laptops, tablets, consoles, cars, appliances, audio, cameras - with model numbers),
  dates and prices in several surface forms, e-mail addresses and phone numbers. Labels
  that do not occur in a sentence are often asked for anyway with an empty list (a
  *negative*), and a few templates contain no entity at all, so the model learns
  precision and not just recall. A label that is asked for always lists every mention.
* **Classifications** (:data:`CLASSIFICATION_TASKS`): ``sentiment`` on product and
  service reviews, and ``topic`` on news-like sentences. The label list is shuffled in
  most records and sometimes trimmed (never dropping the true label), so the model
  cannot learn positions. *Mixed reviews are labelled by their verdict clause*: the
  clause the writer ends on, i.e. the one after "but", "yet", "though" or the main
  clause after an "Although ..." - "The X is nice, but the Y is awful, so it goes
  back" is negative; "The X is awful, but overall it works well" is positive.
* **Structures** (:data:`STRUCTURES`): contact cards, product listings, orders and
  events as ``json_structures``; every field is a plain string copied from the text.
* **Relations** (:data:`RELATIONS`): ``works_for`` (person -> company), ``located_in``
  (company -> location) and ``founded`` (person -> company), as ``head``/``tail``.

A record carries one primary task and often a second one (e.g. a relation sentence
with its entities, a review with its product and price), rarely more.

Train / eval disjointness
-------------------------
``split="train"`` draws from :data:`TRAIN_TEMPLATES`, ``split="eval"`` from
:data:`EVAL_TEMPLATES`. The two sets share no sentence pattern and no distinctive
wording (the tests check that no run of four fixed words is shared), and the
review phrase banks (adjectives, aspects, verdict phrases) are split the same way, so
the eval split measures generalisation to sentence shapes never seen in training. Both
splits use the same label inventory, and each split has its own random and Faker seed
stream. None of the example sentences of the README (used to judge the trained model
on unseen input), nor their distinctive names and wording, occurs in any template or
vocabulary, and a generated sentence that happens to hit one of those names (a random
Faker name can) is regenerated.

Determinism and validity
------------------------
:func:`build_records` is a pure function of ``(count, seed, split)``: it seeds its own
``random.Random`` and Faker instances and never touches global random state. Records
are generated one after another, so ``build_records(n)[:k] == build_records(k)``.
Every record satisfies ``InputExample.from_dict(record).validate() == []`` (enforced here by
stricter checks of its own, so that generating does not import torch; the tests check
with the library), and more:
every annotated string occurs exactly once in the text *as a run of whole words* under
gliner2's whitespace word splitter (the trainer locates gold spans that way, so a
mention inside a longer word or repeated elsewhere would be dropped or mislabelled).
Records failing a check are regenerated, never returned. Duplicate sentences within a
build are regenerated too. Importing this module does not import torch or gliner2.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import random
import re
import string
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import faker

__all__ = [
    "CLASSIFICATION_TASKS",
    "ENTITY_LABELS",
    "EVAL_TEMPLATES",
    "RELATIONS",
    "SPLITS",
    "STRUCTURES",
    "TRAIN_TEMPLATES",
    "Template",
    "build_records",
    "build_tagged_records",
    "templates_for",
]

# =============================================================================
# Label inventory (shared by both splits)
# =============================================================================

ENTITY_LABELS: tuple[str, ...] = (
    "person", "company", "location", "product", "date", "price", "email", "phone",
)
CLASSIFICATION_TASKS: dict[str, tuple[str, ...]] = {
    "sentiment": ("positive", "negative", "neutral"),
    "topic": ("sports", "technology", "business", "politics", "health", "entertainment"),
}
# The first field of each structure is its anchor (gliner2's natural record mode).
STRUCTURES: dict[str, tuple[str, ...]] = {
    "contact": ("name", "email", "phone"),
    "product": ("name", "storage", "price"),
    "order": ("order_id", "customer", "product", "total"),
    "event": ("name", "date", "location"),
}
RELATIONS: tuple[str, ...] = ("works_for", "located_in", "founded")
SPLITS: tuple[str, ...] = ("train", "eval")

# Slot kind (a slot's name without trailing digits) -> the entity label it fills.
# Kinds missing here fill plain words (roles, storage sizes, review phrases, ...).
_KIND_LABEL: dict[str, str] = {
    "person": "person",
    "company": "company",
    "city": "location",
    "country": "location",
    "product": "product",
    "device": "product",
    "date": "date",
    "year": "date",
    "price": "price",
    "email": "email",
    "phone": "phone",
}

# Primary task kinds and how often each is drawn.
_KIND_WEIGHTS: dict[str, float] = {
    "entities": 0.26,
    "relations": 0.17,
    "structure": 0.19,
    "sentiment": 0.18,
    "topic": 0.14,
    "negative": 0.06,
}
# Probability that a record of a kind also carries its entity annotations.
_SECONDARY_ENTITIES: dict[str, float] = {
    "relations": 0.5,
    "structure": 0.3,
    "sentiment": 0.3,
    "topic": 0.3,
}
_SECONDARY_RELATIONS = 0.35  # entity sentences that also support a relation

# BLAKE2b digests (8 bytes, hex) of the lower-cased names and phrases of the README
# examples the trained model is judged on: its company, person, product and place names
# and the distinctive wording of its review and listing sentences (phrases of one to
# three words). No template or vocabulary here contains them; they are kept as digests so
# that those names are spelled nowhere in the training code, and a generated sentence that
# still hits one (a random Faker name can) is regenerated. tests/test_synthetic_data.py
# spells the phrases out and checks that each is covered.
_RESERVED_DIGESTS = frozenset({
    "960eb5a047f5aedf", "dc01028a891a022c", "b1893a424f835b49", "67ab7e079fa1bef1",
    "b2baa1c8578ddfe5", "4ba58156561adfb5", "19ee7e898b639d77", "bc63f3bd484d5c7f",
    "95105a21afedac8c", "3940b72ff4040d95", "ec12b1e28e818a9a", "dc02ffbeb8e1cf26",
})
_RESERVED_MAX_WORDS = 3


def _phrase_digest(phrase: str) -> str:
    return hashlib.blake2b(phrase.encode(), digest_size=8).hexdigest()


def _is_reserved(words: list[str]) -> bool:
    """Whether a run of one to three words is a reserved README name or phrase."""
    return any(
        _phrase_digest(" ".join(words[i:i + n])) in _RESERVED_DIGESTS
        for n in range(1, _RESERVED_MAX_WORDS + 1)
        for i in range(len(words) - n + 1)
    )


# gliner2.processing.word_splitter.WhitespaceTokenSplitter, minus URLs and combining
# marks (neither occurs here); the tests check agreement with the library's splitter.
_WORD_PATTERN = re.compile(
    r"[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}|@[a-z0-9_]+|\w+(?:[-_]\w+)*|\S",
    re.IGNORECASE,
)


def _words(text: str) -> list[str]:
    return [m.group().lower() for m in _WORD_PATTERN.finditer(text)]


def _occurrences(sub: list[str], seq: list[str]) -> int:
    n = len(sub)
    if n == 0:
        return 0
    first = sub[0]
    return sum(1 for i in range(len(seq) - n + 1) if seq[i] == first and seq[i:i + n] == sub)


# =============================================================================
# Templates
# =============================================================================


@dataclass(frozen=True)
class Template:
    """One sentence pattern.

    ``text`` is a ``str.format`` pattern whose ``{slots}`` are filled per record. A slot's
    kind is its name without trailing digits (``person2`` is a ``person``); the kind
    decides the filler and, through ``_KIND_LABEL``, its entity label. ``banks`` gives
    template-local word lists for plain slots. ``label`` is the true class of sentiment
    and topic templates; ``structures`` holds one ``(name, ((field, slot), ...))`` per
    instance; ``relations`` holds ``(relation, head_slot, tail_slot)`` triples.
    ``annotate_entities=False`` marks sentences whose fixed or plain words make entity
    labels ambiguous (e.g. team names built from a city), so they carry no entities.
    """

    id: str
    kind: str
    text: str
    label: str | None = None
    structures: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()
    relations: tuple[tuple[str, str, str], ...] = ()
    banks: Mapping[str, tuple[str, ...]] = field(default_factory=dict, compare=False)
    annotate_entities: bool = True

    @property
    def slots(self) -> tuple[str, ...]:
        seen: list[str] = []
        for _, name, _, _ in string.Formatter().parse(self.text):
            if name and name not in seen:
                seen.append(name)
        return tuple(seen)

    @property
    def entity_slots(self) -> tuple[str, ...]:
        return tuple(s for s in self.slots if _kind(s) in _KIND_LABEL)

    @property
    def shape(self) -> str:
        """The pattern with slot names erased: two templates with one shape are one pattern."""
        return re.sub(r"\{[a-z_0-9]+\}", "{}", self.text)

    @property
    def task(self) -> str | None:
        """The classification task of a sentiment or topic template."""
        return self.kind if self.kind in CLASSIFICATION_TASKS else None


def _kind(slot: str) -> str:
    return slot.rstrip("0123456789")


def _t(
    id: str,
    kind: str,
    text: str,
    *,
    label: str | None = None,
    struct: str = "",
    rels: str = "",
    banks: Mapping[str, tuple[str, ...]] | None = None,
    ents: bool = True,
) -> Template:
    """Build a template from a compact spec.

    ``struct``: ``"contact: name=person email=email phone=phone | name=person2 ..."``
    (instances separated by ``|``, the structure name given once); ``rels``:
    ``"works_for person company; located_in company city"``.
    """
    structures = []
    if struct:
        name, _, rest = struct.partition(":")
        for instance in rest.split("|"):
            pairs = tuple(tuple(p.split("=")) for p in instance.split())
            structures.append((name.strip(), pairs))
    relations = tuple(tuple(r.split()) for r in rels.split(";") if r.strip())
    return Template(
        id=id, kind=kind, text=text, label=label, structures=tuple(structures),
        relations=relations, banks=dict(banks or {}), annotate_entities=ents,
    )


# --- template-local word banks ----------------------------------------------------

_SCORES = ("2-1", "3-1", "1-0", "4-2", "3-0", "2-0")
_COMPETITIONS = ("cup", "league", "regional", "championship", "playoff")
_RACES = ("city marathon", "downhill race", "road race", "triathlon", "sprint final")
_SPORTS = ("tennis", "cycling", "swimming", "golf", "boxing")
_TECH_THINGS = ("cloud platform", "mobile app", "smart speakers", "web browser", "password manager")
_AI_THINGS = ("speech recognition", "language models", "image search", "real-time translation")
_SOFTWARE = ("database", "compiler", "video editor", "machine learning library")
_TECH_TASKS = ("queries", "builds", "rendering", "model training")
_GADGETS = ("robot vacuum", "delivery drone", "home robot", "lawn mowing robot")
_PCTS = tuple(str(n) for n in range(2, 20))
_CHAMBERS = ("senate", "parliament", "city council", "national assembly")
_POLICIES = ("budget", "immigration", "climate", "housing", "education")
_OFFICES = ("president", "parliament", "governor", "mayor")
_TAXES = ("fuel", "property", "income", "sales")
_AGES = ("sixteen", "seventeen")
_HABITS = ("regular walking", "eating more fiber", "getting enough sleep", "daily stretching")
_DISEASES = ("heart disease", "type 2 diabetes", "stroke", "depression")
_ILLNESSES = ("flu", "measles", "asthma", "ear infection")
_CLINIC_SERVICES = ("flu shots", "blood pressure checks", "eye exams", "hearing tests")
_FOODS = ("sugary drinks", "processed meat", "salty snacks", "fried food")
_ORGANS = ("heart", "dental", "liver", "kidney")
_GENRES = ("crime drama", "romantic comedy", "horror film", "space opera", "period drama")
_BAND_KINDS = ("rock band", "pop duo", "jazz quartet", "indie group")
_FILM_KINDS = ("animated film", "superhero movie", "spy thriller", "musical")
_SHOW_KINDS = ("streaming series", "sitcom", "cooking show", "fantasy saga")
_STORE_COUNTS = ("forty", "sixty", "a dozen", "thirty")
_CHORES = ("water the plants", "lock the back door", "feed the cat", "turn off the lights",
           "take out the trash", "close the windows")
_DISHES = ("soup", "stew", "sauce", "curry")
_SPICES = ("salt", "pepper", "garlic", "lemon")
_ROOMS = ("kitchen", "hallway", "bedroom", "living room")
_DOCS = ("budget draft", "project plan", "slide deck", "seating chart")
_OUTINGS = ("hiking trip", "picnic", "garden party", "bike ride")
_DIRECTIONS = ("left", "right")
_LANDMARKS = ("bakery", "pharmacy", "gas station", "old church")
_GROCERIES = ("milk", "eggs", "bread", "butter", "rice", "coffee")
_FLOORS = ("second", "third", "fourth")
_SUPPLIES = ("paper", "toner", "ink")
_RELATIVES = ("aunt", "grandmother", "uncle", "cousin")
_PASTRIES = ("cinnamon rolls", "lemon tart", "apricot pie", "brownies")
_DEPTS = ("design", "security", "logistics", "research", "sales")
_COLORS = ("white", "pale green", "light gray", "dark blue", "yellow")
_FOLDERS = ("shared", "team", "archive", "drafts")
_HOWS = ("heavily", "nonstop", "so hard", "steadily")
_BUILDINGS = ("library", "main office", "annex", "west wing")
_AREAS = ("neighborhood", "village", "family", "street")

# --- review phrase banks, split like the templates ------------------------------

_REVIEW_BANKS: dict[str, dict[str, tuple[str, ...]]] = {
    "train": {
        "pos_adj": ("excellent", "fantastic", "superb", "impressive", "outstanding",
                    "wonderful", "brilliant", "great", "solid"),
        "neg_adj": ("terrible", "awful", "disappointing", "flimsy", "frustrating",
                    "mediocre", "sluggish", "poor", "unreliable"),
        "aspect": ("screen", "camera", "keyboard", "sound quality", "build quality",
                   "customer support", "delivery", "display", "design", "setup process",
                   "charging speed", "software", "touchpad", "noise cancellation",
                   "warranty service", "packaging"),
        "pos_vp": ("works flawlessly", "exceeded my expectations", "is worth every penny",
                   "feels fast and responsive", "has been completely reliable",
                   "made my daily routine easier", "looks even better in person"),
        "neg_vp": ("stopped working almost immediately", "broke on the second day",
                   "is a waste of money", "keeps crashing", "overheats constantly",
                   "feels cheap and fragile", "arrived with a cracked case"),
        "neu_vp": ("arrived in a plain cardboard box", "comes in three colors",
                   "uses a standard charging port", "ships with a short printed manual",
                   "weighs about the same as the previous model",
                   "is sold through the official online store"),
    },
    "eval": {
        "pos_adj": ("stellar", "terrific", "top-notch", "lovely", "amazing", "fabulous"),
        "neg_adj": ("dreadful", "lousy", "underwhelming", "horrible", "subpar", "shoddy"),
        "aspect": ("speakers", "customer service", "shipping", "interface", "hinge",
                   "microphone", "color accuracy", "fan noise"),
        "pos_vp": ("does everything I need", "runs like a dream", "was a fantastic buy",
                   "impresses me constantly"),
        "neg_vp": ("died without warning", "is nothing but trouble", "constantly freezes",
                   "fell apart quickly"),
        "neu_vp": ("was delivered to the front desk", "has a matte finish",
                   "includes two spare cables"),
    },
}

# --- training templates -------------------------------------------------------------

TRAIN_TEMPLATES: tuple[Template, ...] = (
    # entities (some also support a relation)
    _t("train.ent.01", "entities", "{person} joined {company} in {city} on {date}.",
       rels="works_for person company"),
    _t("train.ent.02", "entities", "{company} opened a new office in {city}, {country}."),
    _t("train.ent.03", "entities", "The {product} goes on sale in {country} on {date} for {price}."),
    _t("train.ent.04", "entities", "{person} paid {price} for a refurbished {product} from {company}."),
    _t("train.ent.05", "entities", "Send the signed contract to {email} before {date}."),
    _t("train.ent.06", "entities", "Call {person} at {phone} if the delivery to {city} is delayed."),
    _t("train.ent.07", "entities",
       "{company} will ship the {product} to customers in {country} starting {date}."),
    _t("train.ent.08", "entities",
       "At the trade show in {city}, {person} from {company} demonstrated the {product}.",
       rels="works_for person company"),
    _t("train.ent.09", "entities", "The invoice for the {product}, dated {date}, came to {price}."),
    _t("train.ent.10", "entities", "Questions about your account can be sent to {email} or {phone}."),
    _t("train.ent.11", "entities", "{person} flew from {city} to {city2} on {date} to meet investors."),
    _t("train.ent.12", "entities", "{company} cut the price of the {product} to {price} in {country}."),
    _t("train.ent.13", "entities", "My neighbor {person} just traded in an old {product} for a {product2}."),
    _t("train.ent.14", "entities",
       "On {date}, {company} recalled thousands of {product} units sold in {city}."),
    _t("train.ent.15", "entities", "{person} and {person2} reviewed the {product} for a tech blog in {city}."),
    _t("train.ent.16", "entities", "Reach our {city} branch at {phone} or write to {email}."),
    _t("train.ent.17", "entities",
       "{person}, a buyer for {company}, ordered fifty {product} units at {price} each.",
       rels="works_for person company"),
    # relations
    _t("train.rel.01", "relations", "{person} works as a {role} at {company}.",
       rels="works_for person company"),
    _t("train.rel.02", "relations", "{person} is a {role} for {company} in {city}.",
       rels="works_for person company"),
    _t("train.rel.03", "relations", "{company} is headquartered in {city}, where it employs hundreds of people.",
       rels="located_in company city"),
    _t("train.rel.04", "relations", "{person} founded {company} in {year} with a small team.",
       rels="founded person company"),
    _t("train.rel.05", "relations", "{company}, based in {city}, hired {person} as its new {role}.",
       rels="located_in company city; works_for person company"),
    _t("train.rel.06", "relations", "{person} started {company} out of a garage in {city}.",
       rels="founded person company"),
    _t("train.rel.07", "relations", "{company} was founded by {person} and {person2}.",
       rels="founded person company; founded person2 company"),
    _t("train.rel.08", "relations", "{person}, a longtime {role} at {company}, spoke at the conference.",
       rels="works_for person company"),
    _t("train.rel.09", "relations", "{company} moved its headquarters from {city} to {city2}.",
       rels="located_in company city2"),
    _t("train.rel.10", "relations", "{person} co-founded {company} and still runs its {city} office.",
       rels="founded person company"),
    _t("train.rel.11", "relations", "After leaving {company}, {person} founded {company2} in {city}.",
       rels="founded person company2"),
    _t("train.rel.12", "relations", "{person} has been employed by {company} since {year}.",
       rels="works_for person company"),
    _t("train.rel.13", "relations", "The startup {company}, based in {country}, was launched by {person}.",
       rels="founded person company; located_in company country"),
    _t("train.rel.14", "relations", "{person} runs the {dept} team at {company}.",
       rels="works_for person company", banks={"dept": _DEPTS}),
    _t("train.rel.15", "relations", "{company} appointed {person} as chief executive on {date}.",
       rels="works_for person company"),
    _t("train.rel.16", "relations", "The offices of {company} are located in {city}.",
       rels="located_in company city"),
    # structures
    _t("train.struct.01", "structure", "You can reach {person} at {email} or by phone at {phone}.",
       struct="contact: name=person email=email phone=phone"),
    _t("train.struct.02", "structure", "Contact: {person}, email {email}, tel. {phone}.",
       struct="contact: name=person email=email phone=phone"),
    _t("train.struct.03", "structure", "For support, {person} is available on {phone} and at {email}.",
       struct="contact: name=person email=email phone=phone"),
    _t("train.struct.04", "structure",
       "Reach {person} at {email} or {phone}, and {person2} at {email2} or {phone2}.",
       struct="contact: name=person email=email phone=phone"
              " | name=person2 email=email2 phone=phone2"),
    _t("train.struct.05", "structure", "The {storage} {device} now sells for {price}.",
       struct="product: name=device storage=storage price=price"),
    _t("train.struct.06", "structure", "New listing: {device}, {storage}, asking {price}.",
       struct="product: name=device storage=storage price=price"),
    _t("train.struct.07", "structure", "Get the {device} in the {storage} version for only {price}.",
       struct="product: name=device storage=storage price=price"),
    _t("train.struct.08", "structure", "{device} ({storage}) - {price}, free shipping.",
       struct="product: name=device storage=storage price=price"),
    _t("train.struct.09", "structure", "For {price}, the {device} comes with {storage} of space.",
       struct="product: name=device storage=storage price=price"),
    _t("train.struct.10", "structure", "Order {order_id} from {person}: one {product}, total {price}.",
       struct="order: order_id=order_id customer=person product=product total=price"),
    _t("train.struct.11", "structure", "{person} placed order {order_id} for a {product} and paid {price}.",
       struct="order: order_id=order_id customer=person product=product total=price"),
    _t("train.struct.12", "structure", "Your order {order_id} ({product}, {price}) has shipped, {person}.",
       struct="order: order_id=order_id customer=person product=product total=price"),
    _t("train.struct.13", "structure", "The {event} takes place in {city} on {date}.",
       struct="event: name=event date=date location=city"),
    _t("train.struct.14", "structure",
       "Join us at the {event} on {date} at the convention center in {city}.",
       struct="event: name=event date=date location=city"),
    _t("train.struct.15", "structure", "Registration is open for the {event}, held in {city} on {date}.",
       struct="event: name=event date=date location=city"),
    # sentiment
    _t("train.sent.01", "sentiment", "I love my new {product}; it {pos_vp}.", label="positive"),
    _t("train.sent.02", "sentiment", "The {aspect} on the {product} is {pos_adj} and I would buy it again.",
       label="positive"),
    _t("train.sent.03", "sentiment", "Five stars for {company}, their service was {pos_adj} from start to finish.",
       label="positive"),
    _t("train.sent.04", "sentiment", "Honestly the best purchase I have made, the {product} {pos_vp}.",
       label="positive"),
    _t("train.sent.05", "sentiment", "The {product} {neg_vp}, and support never replied.", label="negative"),
    _t("train.sent.06", "sentiment", "Avoid {company}: the {aspect} was {neg_adj} and the refund took forever.",
       label="negative"),
    _t("train.sent.07", "sentiment", "I regret buying the {product}; the {aspect} is {neg_adj}.",
       label="negative"),
    _t("train.sent.08", "sentiment", "One star. The {aspect} is {neg_adj} and the device {neg_vp}.",
       label="negative"),
    _t("train.sent.09", "sentiment", "The {product} {neu_vp}, according to the product page.",
       label="neutral"),
    _t("train.sent.10", "sentiment", "I received the {product} and have not tried it out yet.",
       label="neutral"),
    _t("train.sent.11", "sentiment", "The package from {company} contained the {product} and a charging cable.",
       label="neutral"),
    _t("train.sent.12", "sentiment", "The {product} is available in black and silver for {price}.",
       label="neutral"),
    _t("train.sent.13", "sentiment", "The {aspect} is {pos_adj}, but the {aspect2} is {neg_adj}, so I am sending it back.",
       label="negative"),
    _t("train.sent.14", "sentiment", "The {aspect} is {neg_adj}, but overall the {product} {pos_vp}.",
       label="positive"),
    _t("train.sent.15", "sentiment", "Although the {aspect} is {pos_adj}, the {product} {neg_vp}.",
       label="negative"),
    _t("train.sent.16", "sentiment", "The {aspect} could be better, yet I am really happy with the {product}.",
       label="positive"),
    _t("train.sent.17", "sentiment", "My {product} has {pos_adj} {aspect} but {neg_adj} {aspect2}, and I would not recommend it.",
       label="negative"),
    # topic
    _t("train.topic.01", "topic", "The {team} beat the {team2} {score} to reach the {competition} final.",
       label="sports", banks={"score": _SCORES, "competition": _COMPETITIONS}, ents=False),
    _t("train.topic.02", "topic", "{person} won the {race} after leading from the very first lap.",
       label="sports", banks={"race": _RACES}),
    _t("train.topic.03", "topic", "Fans packed the stadium as the {team} clinched the {competition} title with a late goal.",
       label="sports", banks={"competition": _COMPETITIONS}, ents=False),
    _t("train.topic.04", "topic", "{company} released a software update that fixes a security flaw in its {tech_thing}.",
       label="technology", banks={"tech_thing": _TECH_THINGS}),
    _t("train.topic.05", "topic", "Engineers at {company} unveiled a chip that runs {ai_thing} without an internet connection.",
       label="technology", banks={"ai_thing": _AI_THINGS}),
    _t("train.topic.06", "topic", "A new open-source {software} from {company} promises faster {tech_task} on ordinary laptops.",
       label="technology", banks={"software": _SOFTWARE, "tech_task": _TECH_TASKS}),
    _t("train.topic.07", "topic", "{company} shares rose {pct} percent after quarterly revenue beat forecasts.",
       label="business", banks={"pct": _PCTS}),
    _t("train.topic.08", "topic", "{company} agreed to acquire {company2} in an all-stock deal.",
       label="business"),
    _t("train.topic.09", "topic", "Retail sales slowed in {country} as higher interest rates weighed on consumer spending.",
       label="business"),
    _t("train.topic.10", "topic", "The {chamber} in {country} passed the {policy} bill after a heated debate.",
       label="politics", banks={"chamber": _CHAMBERS, "policy": _POLICIES}),
    _t("train.topic.11", "topic", "Voters in {country} head to the polls to elect a new {office}.",
       label="politics", banks={"office": _OFFICES}),
    _t("train.topic.12", "topic", "The opposition leader in {country} criticized the government's plan to raise {tax} taxes.",
       label="politics", banks={"tax": _TAXES}),
    _t("train.topic.13", "topic", "Researchers in {city} say {habit} is linked to a lower risk of {disease}.",
       label="health", banks={"habit": _HABITS, "disease": _DISEASES}),
    _t("train.topic.14", "topic", "Doctors in {city} report a sharp rise in {illness} cases among children.",
       label="health", banks={"illness": _ILLNESSES}),
    _t("train.topic.15", "topic", "The clinic in {city} now offers free {clinic_service} for residents over sixty.",
       label="health", banks={"clinic_service": _CLINIC_SERVICES}),
    _t("train.topic.16", "topic", "{person} will star in a new {genre} filmed in {city}.",
       label="entertainment", banks={"genre": _GENRES}),
    _t("train.topic.17", "topic", "The {band_kind} announced a world tour with stops in {city} and {city2}.",
       label="entertainment", banks={"band_kind": _BAND_KINDS}),
    _t("train.topic.18", "topic", "The new {film_kind} starring {person} topped the box office and broke streaming records.",
       label="entertainment", banks={"film_kind": _FILM_KINDS}),
    # negatives: no entity of any label
    _t("train.neg.01", "negative", "Please remember to {chore} and {chore2} before you leave.",
       banks={"chore": _CHORES}),
    _t("train.neg.02", "negative", "The {dish} needs more {spice}, but the bread is perfect.",
       banks={"dish": _DISHES, "spice": _SPICES}),
    _t("train.neg.03", "negative", "We should repaint the {room} {color} before the guests arrive.",
       banks={"room": _ROOMS, "color": _COLORS}),
    _t("train.neg.04", "negative", "The meeting notes are in the {folder} folder, next to the {doc}.",
       banks={"doc": _DOCS, "folder": _FOLDERS}),
    _t("train.neg.05", "negative", "It rained {how}, so the {outing} was called off.",
       banks={"outing": _OUTINGS, "how": _HOWS}),
    _t("train.neg.06", "negative", "Turn {direction} at the {landmark} and take the {nth} street on the {direction2}.",
       banks={"direction": _DIRECTIONS, "landmark": _LANDMARKS, "nth": _FLOORS}),
)

# --- evaluation templates: other shapes and wording, same labels -----------------------

EVAL_TEMPLATES: tuple[Template, ...] = (
    # entities
    _t("eval.ent.01", "entities", "According to {person}, {company} plans to expand into {country} by {date}."),
    _t("eval.ent.02", "entities", "Receipt: {product}, {price}, purchased {date} in {city}."),
    _t("eval.ent.03", "entities", "Drop {person} a line at {email}; they handle the {city} accounts."),
    _t("eval.ent.04", "entities", "Customers in {city} can now preorder the {product} through {company}."),
    _t("eval.ent.05", "entities", "For urgent matters dial {phone} and ask for {person}."),
    # relations
    _t("eval.rel.01", "relations", "{person} currently serves as the {role} of {company}.",
       rels="works_for person company"),
    _t("eval.rel.02", "relations", "Headquarters of {company}: {city}.",
       rels="located_in company city"),
    _t("eval.rel.03", "relations", "It was {person} who set up {company} as a small consultancy.",
       rels="founded person company"),
    _t("eval.rel.04", "relations", "{company}, whose main offices are in {city}, employs {person} as a {role}.",
       rels="located_in company city; works_for person company"),
    _t("eval.rel.05", "relations", "{person} and {person2} launched {company} together.",
       rels="founded person company; founded person2 company"),
    _t("eval.rel.06", "relations", "Staff at {company} welcomed {person}, who heads its {dept} division.",
       rels="works_for person company", banks={"dept": _DEPTS}),
    # structures
    _t("eval.struct.01", "structure", "Write to {person} ({email}) or ring {phone}.",
       struct="contact: name=person email=email phone=phone"),
    _t("eval.struct.02", "structure", "{person} | {email} | {phone}",
       struct="contact: name=person email=email phone=phone"),
    _t("eval.struct.03", "structure", "Deal of the day: {storage} {device}, down to {price}.",
       struct="product: name=device storage=storage price=price"),
    _t("eval.struct.04", "structure", "Selling my {device}, {storage}, barely used, {price} or best offer.",
       struct="product: name=device storage=storage price=price"),
    _t("eval.struct.05", "structure", "{person} ordered a {product} under reference {order_id}; the charge was {price}.",
       struct="order: order_id=order_id customer=person product=product total=price"),
    _t("eval.struct.06", "structure", "Save the date: {event}, {date}, {city}.",
       struct="event: name=event date=date location=city"),
    # sentiment
    _t("eval.sent.01", "sentiment", "What a letdown; my {product} {neg_vp}.", label="negative"),
    _t("eval.sent.02", "sentiment", "Couldn't be happier with the {product}, it {pos_vp}.", label="positive"),
    _t("eval.sent.03", "sentiment", "The {aspect} is {neg_adj}, though I still recommend the {product} to friends.",
       label="positive"),
    _t("eval.sent.04", "sentiment", "My {product} {neu_vp}.", label="neutral"),
    _t("eval.sent.05", "sentiment", "{pos_adj_cap} {aspect}, shame about the {aspect2}; it is going back to the shop.",
       label="negative"),
    _t("eval.sent.06", "sentiment", "{company} handled my complaint quickly and politely.", label="positive"),
    _t("eval.sent.07", "sentiment", "Spent {price} on a {product} whose {aspect} is {neg_adj}.", label="negative"),
    # topic
    _t("eval.topic.01", "topic", "After trailing at halftime, the {team} rallied to win the {competition}.",
       label="sports", banks={"competition": _COMPETITIONS}, ents=False),
    _t("eval.topic.02", "topic", "{person} announced retirement from professional {sport} after a long career.",
       label="sports", banks={"sport": _SPORTS}),
    _t("eval.topic.03", "topic", "A startup from {city} showed a {gadget} that maps rooms with lidar sensors.",
       label="technology", banks={"gadget": _GADGETS}),
    _t("eval.topic.04", "topic", "{company} is testing satellite internet for rural customers in {country}.",
       label="technology"),
    _t("eval.topic.05", "topic", "The retailer {company} will close {store_count} stores as online orders keep growing.",
       label="business", banks={"store_count": _STORE_COUNTS}),
    _t("eval.topic.06", "topic", "Investors cheered as {company} reported record profits and raised its dividend.",
       label="business"),
    _t("eval.topic.07", "topic", "Lawmakers in {country} debated a proposal to lower the voting age to {age}.",
       label="politics", banks={"age": _AGES}),
    _t("eval.topic.08", "topic", "The prime minister of {country} reshuffled the cabinet amid a scandal.",
       label="politics"),
    _t("eval.topic.09", "topic", "Nutritionists in {country} advise cutting back on {food} to protect {organ} health.",
       label="health", banks={"food": _FOODS, "organ": _ORGANS}),
    _t("eval.topic.10", "topic", "The {show_kind} starring {person} was renewed for another season after record ratings.",
       label="entertainment", banks={"show_kind": _SHOW_KINDS}),
    # negatives
    _t("eval.neg.01", "negative", "Could you pick up some {grocery} and {grocery2} on the way home?",
       banks={"grocery": _GROCERIES}),
    _t("eval.neg.02", "negative", "The printer on the {floor} floor of the {building} is out of {supply} again.",
       banks={"floor": _FLOORS, "supply": _SUPPLIES, "building": _BUILDINGS}),
    _t("eval.neg.03", "negative", "My {relative} bakes the best {pastry} in the whole {area}.",
       banks={"relative": _RELATIVES, "pastry": _PASTRIES, "area": _AREAS}),
)

_TEMPLATES: dict[str, tuple[Template, ...]] = {"train": TRAIN_TEMPLATES, "eval": EVAL_TEMPLATES}


def templates_for(split: str) -> tuple[Template, ...]:
    """The templates of a split (``"train"`` or ``"eval"``)."""
    try:
        return _TEMPLATES[split]
    except KeyError:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}") from None


# =============================================================================
# Value vocabularies
# =============================================================================

_CITIES = (
    "Denver", "Austin", "Seattle", "Boston", "Chicago", "Atlanta", "Miami", "Portland",
    "Phoenix", "Toronto", "Vancouver", "Montreal", "Mexico City", "London", "Manchester",
    "Dublin", "Paris", "Lyon", "Berlin", "Munich", "Hamburg", "Madrid", "Barcelona",
    "Lisbon", "Rome", "Milan", "Amsterdam", "Brussels", "Zurich", "Vienna", "Prague",
    "Warsaw", "Stockholm", "Oslo", "Copenhagen", "Helsinki", "Istanbul", "Cairo", "Lagos",
    "Nairobi", "Cape Town", "Dubai", "Mumbai", "Bangalore", "Delhi", "Singapore", "Tokyo",
    "Osaka", "Seoul", "Shanghai", "Sydney", "Melbourne", "Auckland", "São Paulo",
    "Buenos Aires", "Bogotá", "Lima", "Santiago", "San Diego", "Pittsburgh", "Nashville",
)
# The country of each listed city, for "{city}, {country}" pairs.
_CITY_COUNTRY = {
    "Denver": "USA", "Austin": "USA", "Seattle": "USA", "Boston": "USA", "Chicago": "USA",
    "Atlanta": "USA", "Miami": "USA", "Portland": "USA", "Phoenix": "USA", "San Diego": "USA",
    "Pittsburgh": "USA", "Nashville": "USA", "Toronto": "Canada", "Vancouver": "Canada",
    "Montreal": "Canada", "Mexico City": "Mexico", "London": "UK", "Manchester": "UK",
    "Dublin": "Ireland", "Paris": "France", "Lyon": "France", "Berlin": "Germany",
    "Munich": "Germany", "Hamburg": "Germany", "Madrid": "Spain", "Barcelona": "Spain",
    "Lisbon": "Portugal", "Rome": "Italy", "Milan": "Italy", "Amsterdam": "Netherlands",
    "Brussels": "Belgium", "Zurich": "Switzerland", "Vienna": "Austria", "Prague": "Czechia",
    "Warsaw": "Poland", "Stockholm": "Sweden", "Oslo": "Norway", "Copenhagen": "Denmark",
    "Helsinki": "Finland", "Istanbul": "Turkey", "Cairo": "Egypt", "Lagos": "Nigeria",
    "Nairobi": "Kenya", "Cape Town": "South Africa", "Dubai": "UAE", "Mumbai": "India",
    "Bangalore": "India", "Delhi": "India", "Tokyo": "Japan", "Osaka": "Japan",
    "Seoul": "South Korea", "Shanghai": "China", "Sydney": "Australia", "Melbourne": "Australia",
    "Auckland": "New Zealand", "São Paulo": "Brazil", "Buenos Aires": "Argentina",
    "Bogotá": "Colombia", "Lima": "Peru", "Santiago": "Chile",
}
_COUNTRIES = (
    "Canada", "Mexico", "Brazil", "Argentina", "Chile", "Colombia", "Ireland", "France",
    "Germany", "Spain", "Portugal", "Italy", "Belgium", "Switzerland", "Austria", "Poland",
    "Sweden", "Norway", "Denmark", "Finland", "Turkey", "Egypt", "Nigeria", "Kenya",
    "South Africa", "India", "Japan", "South Korea", "Australia", "New Zealand", "Vietnam",
    "Indonesia", "Greece", "Morocco", "Peru", "Thailand",
)
_KNOWN_COMPANIES = (
    "Samsung", "Google", "Amazon", "Sony", "Lenovo", "Dell", "Tesla", "Nike", "Spotify",
    "Netflix", "IBM", "Intel", "Nvidia", "Siemens", "Toyota", "Honda", "Adobe", "Oracle",
    "Shopify", "Airbnb", "Uber", "Salesforce", "Philips", "Bosch", "Unilever", "Nestlé",
    "Airbus", "Volkswagen", "Pfizer", "Visa", "PayPal", "Stripe", "Panasonic", "Xiaomi",
    "Huawei", "Logitech", "Nikon", "LG Electronics", "Hyundai", "IKEA", "Heineken",
    "Ericsson", "Zalando", "Deutsche Bank", "Accenture", "Atlassian", "Canva",
)
_COMPANY_PREFIXES = (
    "Bright", "North", "Blue", "Iron", "Silver", "Quantum", "Cedar", "Summit", "Nova",
    "Pioneer", "Harbor", "Granite", "Maple", "Vertex", "Lumen", "Orbit", "Crescent", "Atlas",
)
_COMPANY_ROOTS = (
    "wave", "wind", "stone", "leaf", "peak", "field", "gate", "bridge", "forge", "path",
    "line", "point", "works", "light",
)
_COMPANY_SUFFIXES = (
    "", " Labs", " Systems", " Technologies", " Corp", " Group", " Analytics", " Foods",
    " Motors", " Health", " Capital", " Robotics", " Energy", " Logistics", " Media",
)
_NAME_LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "en_IN", "pt_BR")
_NAME_LOCALE_WEIGHTS = (0.52, 0.1, 0.08, 0.07, 0.07, 0.06, 0.06, 0.04)

# (prefix, variants) - every variant is appended to the prefix.
_PHONE_FAMILIES = (
    ("Galaxy S", tuple(f"{n}{s}" for n in range(20, 26) for s in ("", " Ultra", "+", " FE"))),
    ("Galaxy A", tuple(str(n) for n in (15, 25, 35, 54, 55))),
    ("Galaxy Z ", ("Flip5", "Flip6", "Fold5", "Fold6")),
    ("Pixel ", tuple(f"{n}{s}" for n in range(6, 10) for s in ("", " Pro", "a", " Pro XL"))),
    ("OnePlus ", tuple(f"{n}{s}" for n in range(10, 14) for s in ("", "R", " Pro"))),
    ("Redmi Note ", tuple(f"{n}{s}" for n in range(11, 15) for s in ("", " Pro", " Pro Max", "S"))),
    ("Xperia ", ("1 V", "1 VI", "5 IV", "10 VI")),
    ("Moto G ", ("Power", "Stylus", "84", "Play")),
    ("Zenfone ", ("9", "10", "11 Ultra")),
    ("Nothing Phone ", ("1", "2", "2a", "3")),
    ("Honor Magic", ("5 Pro", "6 Pro", "V2")),
)
_LAPTOPS = (
    "ThinkPad X1 Carbon", "ThinkPad T14s", "XPS 13", "XPS 15", "Inspiron 16", "Spectre x360",
    "EliteBook 840 G10", "ZenBook 14 OLED", "ROG Zephyrus G14", "Chromebook Plus 515",
    "Yoga Slim 7", "Galaxy Book4 Pro", "Aspire 5", "Swift Go 14", "Legion 5 Pro", "Blade 15",
    "Framework Laptop 13", "IdeaPad Flex 5", "Pavilion 15", "Envy x360",
)
_TABLETS = ("Galaxy Tab S9", "Pixel Tablet", "Fire HD 10", "Tab P12", "Galaxy Tab A9", "reMarkable 2")
_CONSOLES = ("Steam Deck OLED", "PlayStation 5 Slim", "Nintendo Switch OLED", "ROG Ally")
_CARS = (
    "Model 3", "Model Y", "Civic Type R", "Corolla Cross", "F-150 Lightning", "Mustang Mach-E",
    "Ioniq 5", "EV6", "Golf GTI", "Prius Prime", "RAV4 Hybrid", "Leaf SV", "Polestar 2",
    "ID.4", "Taycan 4S", "Outback Wilderness", "CX-5", "Kona Electric",
)
_APPLIANCES = (
    "Dyson V15 Detect", "Roomba j7", "Instant Pot Duo", "Nespresso Vertuo Next", "Vitamix E310",
    "Breville Barista Express", "Ninja Foodi", "Thermomix TM6", "Philips Airfryer XXL",
    "Miele Triflex HX2", "Shark Navigator", "Bosch Serie 8",
)
_GADGETS_PRODUCTS = (
    "Sony WH-1000XM5", "Bose QuietComfort Ultra", "Galaxy Buds2 Pro", "Pixel Buds Pro",
    "Sonos Era 100", "Garmin Forerunner 265", "Fitbit Charge 6", "Galaxy Watch6",
    "GoPro Hero 12", "Canon EOS R6", "Fujifilm X-T5", "Nikon Z6 II", "Kindle Scribe",
    "Meta Quest 3", "DJI Mini 4 Pro",
)
_STORAGE = ("64GB", "128GB", "256GB", "512GB", "1TB", "2TB")
_ROLES = (
    "software engineer", "product manager", "data scientist", "sales director",
    "chief financial officer", "chief technology officer", "designer", "accountant",
    "operations lead", "research scientist", "marketing director", "support specialist",
)
_EVENT_ADJS = ("Annual", "Global", "Spring", "International", "Regional", "Open", "Winter")
_EVENT_TOPICS = ("Robotics", "Data", "Design", "Retail", "Climate", "Fintech", "Gaming",
                 "Startup", "Music", "Developer", "Healthcare", "Food")
_EVENT_TYPES = ("Summit", "Expo", "Forum", "Conference", "Meetup", "Festival", "Hackathon", "Fair")
_TEAM_NAMES = ("Hawks", "Rovers", "United", "Lions", "Comets", "Wolves", "Rangers", "Falcons",
               "Sharks", "Titans")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")
_MONTH_ABBR = ("Jan.", "Feb.", "Mar.", "Apr.", "May", "June", "July", "Aug.", "Sept.",
               "Oct.", "Nov.", "Dec.")
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_EMAIL_DOMAINS = ("gmail.com", "outlook.com", "yahoo.com", "proton.me", "example.org",
                  "mail.net", "fastmail.com")


# =============================================================================
# Generation
# =============================================================================


_CARS_SET = frozenset(_CARS)
_APPLIANCES_SET = frozenset(_APPLIANCES)
_GADGETS_SET = frozenset(_GADGETS_PRODUCTS)
_FIRST_KINDS = frozenset({"person", "product", "device", "city"})


class _Retry(Exception):
    """The current draw failed a check; draw the record again."""


def _derived_seed(*parts: object) -> int:
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


class _Generator:
    """Fills templates for one split from its own seeded random streams."""

    def __init__(self, seed: int, split: str) -> None:
        self.split = split
        self.templates = templates_for(split)
        self.rng = random.Random(_derived_seed("synthetic", split, seed))
        self.fakers: dict[str, faker.Faker] = {}
        for locale in _NAME_LOCALES:
            fake = faker.Faker(locale, use_weighting=False)
            fake.seed_instance(_derived_seed("faker", split, seed, locale))
            self.fakers[locale] = fake
        self.review = _REVIEW_BANKS[split]
        self.by_kind: dict[str, list[Template]] = {}
        for template in self.templates:
            self.by_kind.setdefault(template.kind, []).append(template)
        self.kinds = [k for k in _KIND_WEIGHTS if k in self.by_kind]
        self.kind_weights = [_KIND_WEIGHTS[k] for k in self.kinds]

    # --- value fillers -------------------------------------------------------------

    @property
    def us(self) -> faker.Faker:
        return self.fakers["en_US"]

    def person(self) -> str:
        rng = self.rng
        locale = rng.choices(_NAME_LOCALES, _NAME_LOCALE_WEIGHTS)[0]
        fake = self.fakers[locale]
        first, last = fake.first_name(), fake.last_name()
        if rng.random() < 0.08:
            return f"{first} {rng.choice(string.ascii_uppercase)}. {last}"
        return f"{first} {last}"

    def company(self) -> str:
        r = self.rng.random()
        if r < 0.35:
            return self.rng.choice(_KNOWN_COMPANIES)
        if r < 0.7:
            rng = self.rng
            return rng.choice(_COMPANY_PREFIXES) + rng.choice(_COMPANY_ROOTS) + rng.choice(_COMPANY_SUFFIXES)
        return self.us.company()

    def city(self) -> str:
        if self.rng.random() < 0.25:
            return self.us.city()
        return self.rng.choice(_CITIES)

    def country(self, city: str | None = None) -> str:
        if city in _CITY_COUNTRY and self.rng.random() < 0.9:
            return _CITY_COUNTRY[city]
        return self.rng.choice(_COUNTRIES)

    def device(self) -> str:
        rng = self.rng
        r = rng.random()
        if r < 0.5:
            prefix, variants = rng.choice(_PHONE_FAMILIES)
            return prefix + rng.choice(variants)
        if r < 0.8:
            return rng.choice(_LAPTOPS)
        if r < 0.92:
            return rng.choice(_TABLETS)
        return rng.choice(_CONSOLES)

    def product(self) -> str:
        r = self.rng.random()
        if r < 0.55:
            return self.device()
        if r < 0.7:
            return self.rng.choice(_CARS)
        if r < 0.85:
            return self.rng.choice(_APPLIANCES)
        return self.rng.choice(_GADGETS_PRODUCTS)

    @staticmethod
    def _price_range(product: str | None) -> tuple[float, float]:
        """log10 bounds of a plausible price for a product (any amount without one)."""
        if product is None:
            return 0.7, 3.4  # about 5 to 2500
        if product in _CARS_SET:
            return 4.3, 4.95  # about 20,000 to 90,000
        if product in _APPLIANCES_SET:
            return 1.6, 2.95
        if product in _GADGETS_SET:
            return 1.7, 3.3
        return 2.2, 3.4  # phones, laptops, tablets, consoles

    def date(self) -> str:
        rng = self.rng
        year, month, day = rng.randint(2019, 2026), rng.randint(1, 12), rng.randint(1, 28)
        name, abbr = _MONTHS[month - 1], _MONTH_ABBR[month - 1]
        form = rng.randrange(9)
        if form == 0:
            return f"{name} {day}, {year}"
        if form == 1:
            return f"{abbr} {day}, {year}"
        if form == 2:
            return f"{day} {name} {year}"
        if form == 3:
            return f"{year}-{month:02d}-{day:02d}"
        if form == 4:
            return f"{month:02d}/{day:02d}/{year}"
        if form == 5:
            return f"{name} {day}"
        if form == 6:
            return f"{name} {_ordinal(day)}"
        if form == 7:
            weekday = _WEEKDAYS[_dt.date(year, month, day).weekday()]
            return f"{weekday}, {name} {day}"
        return f"{_ordinal(day)} {name} {year}"

    def year(self) -> str:
        rng = self.rng
        year = rng.randint(1978, 2022)
        if rng.random() < 0.35:
            return f"{rng.choice(_MONTHS)} {year}"
        return str(year)

    def price(self, product: str | None = None) -> str:
        rng = self.rng
        amount = round(10 ** rng.uniform(*self._price_range(product)))
        cents = rng.choice((".99", ".50", ".00", ".95", ".49"))
        form = rng.randrange(10)
        if amount >= 3000 and form in (2, 3):
            form -= 2  # no cents on a car
        if form == 0:
            return f"${amount:,}"
        if form == 1:
            return f"${amount}"
        if form == 2:
            return f"${amount}{cents}"
        if form == 3:
            return f"€{amount}{cents}"
        if form == 4:
            return f"€{amount:,}"
        if form == 5:
            return f"£{amount:,}"
        if form == 6:
            return f"{amount:,} dollars"
        if form == 7:
            return f"{amount:,} euros"
        if form == 8:
            return f"USD {amount:,}"
        return f"{amount:,} EUR"

    def phone(self) -> str:
        rng = self.rng
        if rng.random() < 0.2:
            number = self.us.phone_number()
            return number.split("x")[0]  # drop the extension ("...x3464")

        def digits(n: int) -> str:
            return "".join(rng.choice(string.digits) for _ in range(n))

        area = str(rng.randint(201, 989))
        form = rng.randrange(7)
        if form == 0:
            return f"({area}) {digits(3)}-{digits(4)}"
        if form == 1:
            return f"{area}-{digits(3)}-{digits(4)}"
        if form == 2:
            return f"{area}.{digits(3)}.{digits(4)}"
        if form == 3:
            return f"+1 {area} {digits(3)} {digits(4)}"
        if form == 4:
            return f"+44 20 {digits(4)} {digits(4)}"
        if form == 5:
            return f"+49 30 {digits(7)}"
        return f"+33 1 {digits(2)} {digits(2)} {digits(2)} {digits(2)}"

    def email(self, owner: str | None = None) -> str:
        rng = self.rng
        if owner is None or rng.random() < 0.3:
            if rng.random() < 0.5:
                return self.us.email()
            owner = self.person()
        ascii_name = unicodedata.normalize("NFKD", owner).encode("ascii", "ignore").decode()
        parts = [p for p in re.split(r"[^a-z]+", ascii_name.lower()) if p]
        if not parts:
            return self.us.email()
        first, last = parts[0], parts[-1]
        local = rng.choice((f"{first}.{last}", f"{first[0]}{last}", first, f"{first}{last[0]}",
                            f"{first}_{last}{rng.randint(1, 99)}"))
        domain = rng.choice(_EMAIL_DOMAINS) if rng.random() < 0.6 else self.us.domain_name()
        return f"{local}@{domain}"

    def storage(self) -> str:
        size = self.rng.choice(_STORAGE)
        return size.replace("GB", " GB").replace("TB", " TB") if self.rng.random() < 0.2 else size

    def order_id(self) -> str:
        rng = self.rng
        form = rng.randrange(3)
        if form == 0:
            return f"ORD-{rng.randint(10000, 99999)}"
        if form == 1:
            return f"#{rng.choice(string.ascii_uppercase)}{rng.randint(1000, 9999)}"
        return "".join(rng.choice(string.ascii_uppercase) for _ in range(2)) + str(rng.randint(100000, 999999))

    def event(self) -> str:
        rng = self.rng
        return f"{rng.choice(_EVENT_ADJS)} {rng.choice(_EVENT_TOPICS)} {rng.choice(_EVENT_TYPES)}"

    def team(self) -> str:
        return f"{self.rng.choice(_CITIES)} {self.rng.choice(_TEAM_NAMES)}"

    def role(self) -> str:
        return self.rng.choice(_ROLES)

    def fill(self, template: Template, slot: str, values: dict[str, str]) -> str:
        kind = _kind(slot)
        if kind in template.banks:
            return self.rng.choice(template.banks[kind])
        if kind == "pos_adj_cap":
            return self.rng.choice(self.review["pos_adj"]).capitalize()
        if kind in self.review:
            return self.rng.choice(self.review[kind])
        if kind == "email":
            return self.email(values.get("person" + slot[len("email"):]))
        if kind == "country":
            return self.country(values.get("city"))
        if kind == "price":
            products = [v for s, v in values.items() if _kind(s) in ("product", "device")]
            return self.price(products[0] if products else None)
        method = getattr(self, kind, None)
        if method is None:
            raise KeyError(f"template {template.id}: no filler for slot {slot!r}")
        return method()

    # --- records -------------------------------------------------------------------

    def draw(self) -> tuple[Template, dict]:
        rng = self.rng
        kind = rng.choices(self.kinds, self.kind_weights)[0]
        template = rng.choice(self.by_kind[kind])
        values: dict[str, str] = {}
        # persons, products and cities first: e-mail addresses are made from their owner's
        # name, prices fit the product, a country fits the city before it
        for slot in sorted(template.slots, key=lambda s: _kind(s) not in _FIRST_KINDS):
            for _ in range(8):
                value = self.fill(template, slot, values)
                if value not in values.values():
                    break
            else:
                raise _Retry
            values[slot] = value
        text = template.text.format(**values)
        words = _words(text)
        if _is_reserved(words):
            raise _Retry

        def check(value: str) -> str:
            # once, as whole words, so the trainer finds exactly this span
            if _occurrences(_words(value), words) != 1:
                raise _Retry
            return value

        output: dict = {}
        secondary = rng.random()
        want_entities = kind in ("entities", "negative") or (
            template.annotate_entities and bool(template.entity_slots)
            and secondary < _SECONDARY_ENTITIES.get(kind, 0.0)
        )
        if want_entities:
            output["entities"] = self._entities(template, values, check)
        if kind == "relations" or (kind == "entities" and template.relations
                                   and rng.random() < _SECONDARY_RELATIONS):
            output["relations"] = [
                {name: {"head": check(values[head]), "tail": check(values[tail])}}
                for name, head, tail in template.relations
            ]
        if template.structures:
            output["json_structures"] = [
                {name: {f: check(values[slot]) for f, slot in pairs}}
                for name, pairs in template.structures
            ]
        if template.task:
            output["classifications"] = [self._classification(template.task, template.label)]
        return template, {"input": text, "output": output}

    def _entities(self, template: Template, values: dict[str, str], check) -> dict[str, list[str]]:
        rng = self.rng
        present: dict[str, list[str]] = {}
        for slot in sorted(template.entity_slots, key=lambda s: template.text.index("{" + s + "}")):
            label = _KIND_LABEL[_kind(slot)]
            present.setdefault(label, []).append(check(values[slot]))
        absent = [label for label in ENTITY_LABELS if label not in present]
        if template.kind == "negative":
            k = len(absent) if rng.random() < 0.5 else rng.randint(3, len(absent))
        else:
            r = rng.random()
            k = 0 if r < 0.2 else (len(absent) if r < 0.45 else rng.randint(1, min(2, len(absent))))
        chosen = {label: [] for label in rng.sample(absent, k)}
        # sometimes ask for only some of the labels present (always keeping one)
        asked = [label for label in present if rng.random() >= 0.15]
        if present and not asked:
            asked = [rng.choice(list(present))]
        entities = {label: list(present[label]) for label in asked}
        entities.update(chosen)
        items = list(entities.items())
        rng.shuffle(items)
        return dict(items)

    def _classification(self, task: str, true_label: str) -> dict:
        rng = self.rng
        labels = list(CLASSIFICATION_TASKS[task])
        if task == "sentiment":
            if true_label != "neutral" and rng.random() < 0.25:
                labels.remove("neutral")
            if rng.random() < 0.65:
                rng.shuffle(labels)
        else:
            if rng.random() < 0.5:
                others = [label for label in labels if label != true_label]
                labels = [true_label, *rng.sample(others, rng.randint(1, len(others) - 1))]
                rng.shuffle(labels)
            elif rng.random() < 0.7:
                rng.shuffle(labels)
        return {"task": task, "labels": labels, "true_label": true_label}


def _valid(record: dict) -> bool:
    """The library's validation rules for the record form made here (strings only)."""
    text = record["input"].lower()
    output = record["output"]
    if not record["input"].strip() or not output:
        return False
    for mentions in output.get("entities", {}).values():
        if any(m.lower() not in text for m in mentions):
            return False
    for item in output.get("json_structures", []) + output.get("relations", []):
        for fields in item.values():
            if any(not v or v.lower() not in text for v in fields.values()):
                return False
    return all(cls["true_label"] in cls["labels"] for cls in output.get("classifications", []))


def _iter_tagged(seed: int, split: str) -> Iterator[tuple[str, dict]]:
    generator = _Generator(seed, split)
    seen: set[str] = set()
    failures = 0
    while True:
        try:
            template, record = generator.draw()
        except _Retry:
            template, record = None, None
        if record is None or record["input"] in seen or not _valid(record):
            failures += 1
            if failures > 1000 + 10 * len(seen):
                raise RuntimeError(f"synthetic {split} data: too many rejected draws")
            continue
        seen.add(record["input"])
        yield template.id, record


def build_tagged_records(count: int, *, seed: int = 0, split: str = "train") -> list[tuple[str, dict]]:
    """Like :func:`build_records`, each record paired with the id of its template."""
    if count < 0:
        raise ValueError("count must be >= 0")
    templates_for(split)
    if count == 0:
        return []
    out = []
    for item in _iter_tagged(seed, split):
        out.append(item)
        if len(out) == count:
            break
    return out


def build_records(count: int, *, seed: int = 0, split: str = "train") -> list[dict]:
    """`count` validated records. split="train" uses the training templates, split="eval" a
    disjoint set of templates (different sentence shapes and wording, never seen in
    training) and a different faker seed stream.

    Each record is a fresh ``{"input": str, "output": {...}}`` dict in gliner2's training
    JSONL form (no two records share a list or dict, as gliner2's processor edits
    schemas in place). The result depends only on ``(count, seed, split)``, and
    ``build_records(n)[:k] == build_records(k)`` for the same seed and split.
    """
    return [record for _, record in build_tagged_records(count, seed=seed, split=split)]
