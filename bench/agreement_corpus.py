"""A deterministic corpus of (text × schema) pairs for precision-agreement runs.

``pairs()`` returns the same list every time (no randomness that is not seeded,
no downloads): about 250 pairs of realistic texts (news, reviews, technical,
finance, sports, biomedical, legal, e-mail, social media, several languages and
scripts; from a few words to ~300 tokens; with and without punctuation) and
schemas that cover every GLiNER2 task kind: entities (plain and with
descriptions), classification (single- and multi-label, with and without label
descriptions), structures (``str`` / ``list`` fields, fields with choices,
field descriptions), relations, and schemas that combine several kinds.

Schemas are plain JSON-able specs (see ``SCHEMAS``); ``build_schema(model, spec)``
turns one into the library's builder, the way a caller of ``batch_extract`` would.

The int8-ptq calibration texts (``gliner_server.runtime.calibration``) are a
separate set: the agreement measured here is on held-out text.
"""
from __future__ import annotations

import random
import re

# ---------------------------------------------------------------------------
# Texts: (id, domain, text). Domains pick the schemas a text is paired with.
# ---------------------------------------------------------------------------

_BASE_TEXTS: list[tuple[str, str, str]] = [
    # --- news -------------------------------------------------------------
    ("news-01", "news", "Apple CEO Tim Cook announced the iPhone 15 in Cupertino on Tuesday."),
    ("news-02", "news", "The European Central Bank raised interest rates by a quarter point on Thursday, its tenth "
                        "consecutive increase, as President Christine Lagarde warned that inflation in the euro area "
                        "would stay too high for too long."),
    ("news-03", "news", "Firefighters in British Columbia evacuated more than 4,000 residents of West Kelowna "
                        "overnight as a wildfire jumped Okanagan Lake, officials said."),
    ("news-04", "news", "Microsoft agreed to buy Activision Blizzard for $68.7 billion in January 2022, a deal that "
                        "regulators in the United States and the United Kingdom spent more than a year reviewing."),
    ("news-05", "news", "Prime Minister Jacinda Ardern said on Thursday she would step down next month, telling "
                        "reporters in Napier that she no longer had enough in the tank to do the job justice."),
    ("news-06", "news", "NASA's Perseverance rover collected its first rock sample from Jezero Crater in September "
                        "2021 after an earlier attempt came up empty."),
    ("news-07", "news", "Toyota will invest $1.3 billion in its Kentucky plant to build a new three-row electric SUV, "
                        "the company said Wednesday."),
    ("news-08", "news", "Two people were injured when a tram derailed near Amsterdam Centraal station on Sunday "
                        "morning; service on lines 2 and 12 was suspended for several hours."),
    ("news-09", "news", "The World Health Organization declared that mpox is no longer a global health emergency, "
                        "Director-General Tedros Adhanom Ghebreyesus said in Geneva."),
    ("news-10", "news", "Shares of Nvidia rose 6% in after-hours trading after the chipmaker forecast quarterly "
                        "revenue of about $11 billion, far above Wall Street estimates."),
    # --- reviews ----------------------------------------------------------
    ("review-01", "review", "The battery easily lasts two days, but the camera struggles in low light and the "
                            "charger it ships with is painfully slow."),
    ("review-02", "review", "Absolutely loved this place! The ramen at Ichiran was rich and the staff were friendly, "
                            "though we waited 40 minutes for a table on a Friday night."),
    ("review-03", "review", "Returned it after a week. The Sony WH-1000XM5 headphones sound great, yet the headband "
                            "cracked and customer support never answered my emails."),
    ("review-04", "review", "Solid mid-range laptop for the price: the Lenovo IdeaPad 5 has a bright 14-inch screen, "
                            "16 GB of RAM and a keyboard that is comfortable for long writing sessions."),
    ("review-05", "review", "Terrible experience. The hotel room at the Grand Plaza smelled of smoke, the Wi-Fi kept "
                            "dropping, and the front desk charged us twice for parking."),
    ("review-06", "review", "Five stars for the Kindle Paperwhite. Light enough to hold in one hand, waterproof, and the "
                            "warm light setting is gentle on the eyes at night."),
    ("review-07", "review", "The plot of Oppenheimer drags in the middle, but Cillian Murphy is superb and Ludwig "
                            "Göransson's score is unforgettable."),
    ("review-08", "review", "Ordered the large pepperoni from Tony's Pizzeria at 7pm, it arrived at 8:15 cold and "
                            "soggy. Won't order again."),
    # --- technical --------------------------------------------------------
    ("tech-01", "technical", "To upgrade PostgreSQL from version 14 to 16, run pg_upgrade with the --link option and "
                             "check the logs in /var/log/postgresql before restarting the service."),
    ("tech-02", "technical", "The Kubernetes scheduler placed the pod on node-3, but the kubelet reported "
                             "ImagePullBackOff because the registry at registry.internal:5000 rejected the credentials."),
    ("tech-03", "technical", "Python 3.12 removes the distutils module; projects should migrate to setuptools or to "
                             "the build backend declared in pyproject.toml."),
    ("tech-04", "technical", "Our REST API now returns HTTP 429 when a client exceeds 100 requests per minute; the "
                             "Retry-After header tells the client how many seconds to wait."),
    ("tech-05", "technical", "Bug: after updating to Firefox 121 on Ubuntu 22.04, WebGL pages crash with error "
                             "NS_ERROR_OUT_OF_MEMORY when hardware acceleration is enabled."),
    ("tech-06", "technical", "The Raspberry Pi 5 uses a Broadcom BCM2712 quad-core Arm Cortex-A76 processor running "
                             "at 2.4 GHz and supports up to 8 GB of LPDDR4X memory."),
    ("tech-07", "technical", "Set max_connections to 200 in redis.conf and restart the redis-server unit with "
                             "systemctl; the maxmemory-policy should stay allkeys-lru."),
    ("tech-08", "technical", "OpenAI released the Whisper speech recognition model under the MIT license; it was "
                             "trained on 680,000 hours of multilingual audio."),
    # --- finance ----------------------------------------------------------
    ("fin-01", "finance", "Berkshire Hathaway reported operating earnings of $10.04 billion for the second quarter, "
                          "up 6.6% from a year earlier, and held $147 billion in cash."),
    ("fin-02", "finance", "Goldman Sachs cut its price target on Tesla to $248 from $269, citing weaker margins in "
                          "China and slowing demand for the Model 3."),
    ("fin-03", "finance", "The yield on the 10-year Treasury note climbed to 4.8%, its highest level since 2007, "
                          "as investors priced in higher-for-longer rates from the Federal Reserve."),
    ("fin-04", "finance", "Invoice #INV-2023-0412 from Acme Supplies Ltd. totals €12,480.00 and is due on 30 "
                          "November 2023; payment should be made to IBAN DE89 3704 0044 0532 0130 00."),
    # --- sports -----------------------------------------------------------
    ("sport-01", "sports", "Lionel Messi scored twice as Inter Miami beat Orlando City 3-1 at DRV PNK Stadium on "
                           "Wednesday night."),
    ("sport-02", "sports", "Serena Williams announced her retirement from professional tennis after losing to Ajla "
                           "Tomljanović in the third round of the US Open."),
    ("sport-03", "sports", "The Kansas City Chiefs defeated the Philadelphia Eagles 38-35 in Super Bowl LVII in "
                           "Glendale, Arizona, with Patrick Mahomes named MVP."),
    ("sport-04", "sports", "Max Verstappen won the Japanese Grand Prix at Suzuka, sealing Red Bull's sixth "
                           "constructors' title with six races to spare."),
    # --- biomedical -------------------------------------------------------
    ("bio-01", "biomedical", "Patients receiving 10 mg of apixaban twice daily had fewer major bleeding events than "
                             "those on warfarin, according to the ARISTOTLE trial."),
    ("bio-02", "biomedical", "The patient, a 67-year-old man with type 2 diabetes, was admitted to St. Mary's "
                             "Hospital with chest pain and started on aspirin and atorvastatin."),
    ("bio-03", "biomedical", "Mutations in the BRCA1 gene increase the lifetime risk of breast and ovarian cancer; "
                             "carriers are often offered screening from age 25."),
    ("bio-04", "biomedical", "Pfizer and BioNTech reported that their RSV vaccine was 85.7% effective against "
                             "severe disease in adults over 60 in a phase 3 study."),
    # --- legal / business -------------------------------------------------
    ("legal-01", "legal", "This Agreement is entered into on March 1, 2024 between Northwind Traders Inc., a "
                          "Delaware corporation, and Contoso GmbH, having its registered office in Munich, Germany."),
    ("legal-02", "legal", "The tenant shall pay a monthly rent of $2,350 no later than the fifth day of each month; "
                          "late payments incur a fee of $75."),
    ("legal-03", "legal", "Either party may terminate this contract with ninety (90) days' written notice, provided "
                          "that all outstanding invoices have been settled."),
    # --- e-mail / chat ----------------------------------------------------
    ("email-01", "email", "Hi Sarah, can we move Thursday's budget review with Daniel Kim to 3pm? I'm stuck at the "
                          "Boston office until lunch. Thanks, Priya"),
    ("email-02", "email", "Your order #A-99812 has shipped via UPS and should arrive in Denver by Friday, June 14. "
                          "Track it with number 1Z999AA10123456784."),
    ("email-03", "email", "Reminder: the quarterly all-hands is on Monday at 10:00 in Conference Room B. Lunch will "
                          "be provided by Green Bowl Catering."),
    # --- social media (informal, little punctuation) ----------------------
    ("social-01", "social", "just landed in tokyo with @mike_travels omg the view of mt fuji from the plane was unreal"),
    ("social-02", "social", "cant believe spotify raised prices again thats the third time this year im switching "
                            "to apple music"),
    ("social-03", "social", "huge thanks to the team at Shopify for the conference in Toronto!! learned so much "
                            "about headless commerce 🚀🚀"),
    ("social-04", "social", "anyone else's xbox series x stuck on the green screen after the update?? been "
                            "restarting for an hour"),
    # --- unicode / other languages ----------------------------------------
    ("uni-01", "unicode", "François Hollande a rencontré Angela Merkel à Berlin le 15 mai 2012, au lendemain de son "
                          "investiture à l'Élysée."),
    ("uni-02", "unicode", "Die Deutsche Bahn kündigte an, dass der ICE zwischen München und Zürich ab Dezember "
                          "stündlich fahren wird."),
    ("uni-03", "unicode", "Gabriel García Márquez nació en Aracataca, Colombia, y recibió el Premio Nobel de "
                          "Literatura en 1982."),
    ("uni-04", "unicode", "ソニーの吉田憲一郎社長は東京で新型のPlayStation 5を発表した。"),
    ("uni-05", "unicode", "Zoë Ødegaard paid £4.50 for a flat white at Café Noël in Reykjavík — “worth every "
                          "penny”, she said ☕."),
    ("uni-06", "unicode", "Пётр Ильич Чайковский написал балет «Лебединое озеро» в Москве в 1876 году."),
    ("uni-07", "unicode", "Samsung Electronics (삼성전자) reported a 95% drop in operating profit, its lowest "
                          "in 14 years, as memory chip prices fell."),
    ("uni-08", "unicode", "İstanbul'daki Ayasofya, 537 yılında İmparator I. Justinianus tarafından inşa ettirildi."),
    # --- very short -------------------------------------------------------
    ("short-01", "short", "Meet me at Heathrow."),
    ("short-02", "short", "Great service, fast delivery."),
    ("short-03", "short", "Elon Musk bought Twitter."),
    ("short-04", "short", "Refund not received yet"),
    ("short-05", "short", "Dr. Lee prescribed ibuprofen."),
    ("short-06", "short", "Paris, 14 July 1789."),
]

# Long texts (~200-300 tokens): several paragraphs of one story, as an article would run.
_LONG_TEXTS: list[tuple[str, str, str]] = [
    ("long-01", "news",
     "Shares of Volkswagen fell 4% in Frankfurt on Monday after the carmaker said it would cut its delivery "
     "forecast for the year, blaming weaker demand for electric vehicles in Europe and fierce competition from "
     "Chinese brands such as BYD. Chief executive Oliver Blume told analysts on a conference call that the group "
     "now expects to deliver between 9 million and 9.3 million vehicles, down from an earlier target of 9.5 million. "
     "The company also confirmed that it was reviewing the future of its plant in Zwickau, Saxony, where production "
     "of the ID.3 hatchback has been scaled back twice since the summer. Union representatives at IG Metall said they "
     "would resist any closure and called for talks with the management board in Wolfsburg before the end of the "
     "month. Analysts at UBS said the guidance cut was smaller than feared, but warned that margins at the core "
     "Volkswagen brand would remain under pressure until the cheaper ID.2 model reaches showrooms in 2026."),
    ("long-02", "technical",
     "We observed intermittent 502 errors from the checkout service between 14:05 and 14:47 UTC on 3 October. The "
     "root cause was a connection pool exhaustion in the payments gateway: a configuration change deployed at 13:58 "
     "lowered the pool size from 64 to 16 connections per pod, while traffic from the autumn promotion was roughly "
     "twice the usual Tuesday peak. Requests queued behind the pool, exceeded the 30-second timeout configured on the "
     "NGINX ingress, and were returned to clients as Bad Gateway responses. The on-call engineer, Maria Santos, rolled "
     "back the change at 14:41 and the error rate returned to baseline six minutes later. About 3,200 orders failed; "
     "customers were emailed a discount code. Follow-up actions: add an alert on pool wait time, require load testing "
     "for gateway configuration changes, and move the pool size into the service's Helm chart so that it is "
     "reviewed together with the deployment."),
    ("long-03", "review",
     "I have owned the Breville Barista Express for about eight months now and wanted to write an honest review. "
     "The good: the built-in conical burr grinder is convenient, the steam wand produces proper microfoam once you "
     "learn the technique, and the machine heats up in under a minute. Espresso shots are consistent as long as you "
     "use fresh beans; I buy mine from a local roaster in Portland. The bad: the drip tray fills up quickly, the "
     "grinder is loud enough to wake the whole house, and the pressure gauge is more decoration than tool. After six "
     "months the grinder started jamming with oily dark roasts, and Breville support asked me to send the unit to "
     "their service centre in Torrance, California, which took three weeks. Overall I would still recommend it to a "
     "beginner who wants to learn, but if you already know you love espresso, spend a bit more and get a separate "
     "grinder."),
    ("long-04", "biomedical",
     "A 54-year-old woman presented to the emergency department of Massachusetts General Hospital with a three-day "
     "history of fever, productive cough and shortness of breath. Her medical history included hypertension, treated "
     "with lisinopril 10 mg daily, and mild asthma. On examination her temperature was 38.9 °C, respiratory rate 24 "
     "breaths per minute and oxygen saturation 91% on room air. A chest radiograph showed consolidation in the right "
     "lower lobe. Blood cultures grew Streptococcus pneumoniae. She was started on intravenous ceftriaxone and oral "
     "azithromycin, and received supplemental oxygen through a nasal cannula. Her fever resolved within 48 hours and "
     "she was discharged on day five with a seven-day course of amoxicillin. Follow-up with her primary care "
     "physician, Dr. Alan Brooks, was arranged for two weeks later, and she was advised to receive the pneumococcal "
     "vaccine once recovered."),
    ("long-05", "sports",
     "Manchester City completed a historic treble on Saturday night in Istanbul, beating Inter Milan 1-0 in the "
     "Champions League final at the Atatürk Olympic Stadium. Rodri's 68th-minute strike, a low shot from the edge of "
     "the area after Bernardo Silva's cut-back, was enough to settle a tense match in which Inter had the better "
     "chances early on. Romelu Lukaku headed straight at Ederson from close range in the closing minutes, and Federico "
     "Dimarco hit the crossbar shortly after the goal. Kevin De Bruyne limped off with a hamstring injury in the first "
     "half, the second time in three years he has been forced out of a European final. Pep Guardiola, who won the "
     "competition twice with Barcelona, said his side had finally completed the journey the club began when Sheikh "
     "Mansour bought it in 2008. City join Manchester United as the only English team to win the league, the FA Cup "
     "and the European Cup in the same season."),
    ("long-06", "finance",
     "In its annual report, Northwind Traders said revenue grew 12% to $4.2 billion in fiscal 2023, driven by strong "
     "demand in its specialty foods division and the acquisition of Fabrikam Organics in March. Operating margin "
     "narrowed to 8.1% from 9.4% because of higher freight and packaging costs, which the company expects to ease in "
     "the second half of next year. The board approved a dividend of $0.42 per share, payable on 15 January to "
     "shareholders of record on 20 December, and authorised a new $500 million share buyback programme. Chief "
     "financial officer Laura Chen told investors that net debt stood at $1.1 billion, or 1.6 times adjusted EBITDA, "
     "comfortably within the covenant on its revolving credit facility with Bank of America. The company reiterated "
     "its guidance for mid-single-digit organic growth and said it would open a new distribution centre near "
     "Rotterdam to serve customers in Benelux and northern Germany."),
    ("long-07", "legal",
     "This Software License Agreement is made between Contoso Ltd., a company registered in England and Wales with "
     "number 04567890, and the customer identified in the order form. Contoso grants the customer a non-exclusive, "
     "non-transferable licence to use the software for its internal business purposes during the subscription term. "
     "The customer shall not sublicense, rent or lease the software, nor reverse engineer it except to the extent "
     "permitted by applicable law. Fees are payable annually in advance within thirty days of the invoice date; "
     "overdue amounts bear interest at 4% above the Bank of England base rate. Either party may terminate the "
     "agreement if the other commits a material breach that is not remedied within forty-five days of written "
     "notice. This agreement is governed by the laws of England and the courts of London have exclusive "
     "jurisdiction over any dispute arising from it."),
    ("long-08", "email",
     "Hi team, a quick summary of yesterday's planning meeting in Seattle. Jordan Lee will own the migration of the "
     "billing service to the new Postgres cluster, with a target cut-over date of 18 November; Aisha Rahman will "
     "coordinate with the finance team in London so that month-end reporting is not affected. We agreed to freeze "
     "schema changes from 11 November. The mobile release 4.2 slips by one week because the App Store review flagged "
     "the new subscription screen, and Tom will resubmit on Monday after legal approves the revised wording. Budget: "
     "we are at 87% of the quarterly cloud spend, mostly due to the load tests, so please shut down unused staging "
     "environments. The next sync is Thursday at 9:30 Pacific. Let me know if I missed anything. Best, Elena"),
    ("long-09", "news",
     "GENEVA, 12 March — Negotiators from 42 countries failed to reach agreement on a global plastics treaty after "
     "five days of talks at the Palais des Nations, leaving the most contentious questions for a final session in "
     "Busan, South Korea, later this year. The draft text, running to more than 70 pages, still contains competing "
     "options on whether to cap the production of new plastic, which a coalition led by Rwanda and Norway supports "
     "and which oil-producing states including Saudi Arabia and Russia oppose. Inger Andersen, executive director "
     "of the United Nations Environment Programme, said progress had been made on waste management and on "
     "financing for developing countries, but admitted that \"the hardest choices are still in front of us\". "
     "Environmental groups were less diplomatic: Greenpeace accused a handful of governments of deliberately "
     "slowing the process, while the Center for International Environmental Law counted more than 140 industry "
     "lobbyists registered for the session, more than the delegations of the European Union combined. Industry "
     "associations, for their part, argued that recycling targets and better collection systems in Asia and Africa "
     "would reduce leakage into the oceans faster than production limits. Scientists at the University of "
     "Plymouth estimate that between 19 and 23 million tonnes of plastic waste enter rivers, lakes and seas each "
     "year, a figure that could nearly triple by 2040 without new policies. Observers said the chair, Ecuadorian "
     "diplomat Luis Vayas Valdivieso, would circulate a streamlined text by the end of April."),
]


def _strip_punctuation(text: str) -> str:
    """The informal variant: lowercase, punctuation removed (as chat messages and ASR output come)."""
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s]", " ", text.lower())).strip()


# Texts that also appear without punctuation (and lowercased).
_NO_PUNCT_OF = ["news-01", "news-04", "news-07", "review-01", "review-03", "review-08", "tech-02", "fin-02",
                "sport-01", "sport-03", "bio-02", "email-01", "email-02", "long-01", "long-03"]


def texts() -> list[tuple[str, str, str]]:
    """All texts: (id, domain, text), base and long texts plus their no-punctuation variants."""
    base = _BASE_TEXTS + _LONG_TEXTS
    by_id = {tid: (domain, text) for tid, domain, text in base}
    variants = [(f"{tid}-nopunct", by_id[tid][0], _strip_punctuation(by_id[tid][1])) for tid in _NO_PUNCT_OF]
    return base + variants


# ---------------------------------------------------------------------------
# Schemas: JSON-able specs. Keys: entities (list, or dict name → description),
# classifications (list of {task, labels (list or dict name → description),
# multi_label, cls_threshold}), structures (list of {name, fields: [{name, dtype,
# choices, description}]}), relations (list, or dict name → description).
# ---------------------------------------------------------------------------

SCHEMAS: dict[str, dict] = {
    # entities
    "ner-news": {"entities": ["person", "organization", "location", "date"]},
    "ner-news-desc": {"entities": {
        "person": "Name of a real person, e.g. a politician, executive or athlete",
        "organization": "Company, institution, team or government body",
        "location": "City, country, region, venue or geographic feature",
        "money": "An amount of money with its currency"}},
    "ner-product": {"entities": ["product", "brand", "feature", "price"]},
    "ner-tech": {"entities": {"software": "A program, library, service or operating system",
                              "version": "A version number of software or hardware",
                              "error": "An error code or error message",
                              "hardware": "A physical device or component"}},
    "ner-bio": {"entities": ["drug", "disease", "gene", "dosage", "hospital"]},
    "ner-fin": {"entities": ["company", "monetary_amount", "percentage", "financial_instrument", "person"]},
    "ner-legal": {"entities": {"party": "A party to the agreement", "date": "A calendar date",
                               "amount": "An amount of money", "jurisdiction": "A governing law or court"}},
    "ner-contact": {"entities": ["person", "location", "date", "time", "order_number"]},
    "ner-single": {"entities": ["person"]},
    "ner-many": {"entities": ["person", "organization", "location", "date", "event", "product", "money",
                              "nationality", "title"]},
    # classification
    "cls-sentiment": {"classifications": [{"task": "sentiment", "labels": ["positive", "negative", "neutral"]}]},
    "cls-sentiment-desc": {"classifications": [{"task": "sentiment", "labels": {
        "positive": "The author is satisfied or enthusiastic",
        "negative": "The author is unhappy, complains or warns others",
        "mixed": "Both praise and criticism"}}]},
    "cls-topic": {"classifications": [{"task": "topic", "labels": [
        "politics", "business", "technology", "sports", "health", "science", "entertainment"]}]},
    "cls-topics-multi": {"classifications": [{"task": "topics", "multi_label": True, "cls_threshold": 0.5,
                                              "labels": ["economy", "technology", "health", "law", "travel",
                                                         "sports", "environment"]}]},
    "cls-aspects-multi": {"classifications": [{"task": "aspects", "multi_label": True, "cls_threshold": 0.4,
                                               "labels": ["price", "quality", "service", "delivery", "battery",
                                                          "design"]}]},
    "cls-intent": {"classifications": [{"task": "intent", "labels": {
        "request": "Asks someone to do something", "information": "Informs or notifies",
        "complaint": "Reports a problem", "praise": "Thanks or compliments"}}]},
    "cls-urgency": {"classifications": [{"task": "urgency", "labels": ["low", "medium", "high"]}]},
    # structures
    "struct-product": {"structures": [{"name": "product", "fields": [
        {"name": "name", "dtype": "str"},
        {"name": "brand", "dtype": "str"},
        {"name": "pros", "dtype": "list", "description": "Good points mentioned"},
        {"name": "cons", "dtype": "list", "description": "Problems mentioned"},
        {"name": "rating", "dtype": "str", "choices": ["positive", "negative", "mixed"]}]}]},
    "struct-event": {"structures": [{"name": "event", "fields": [
        {"name": "what", "dtype": "str", "description": "What happened"},
        {"name": "who", "dtype": "list"},
        {"name": "where", "dtype": "str"},
        {"name": "when", "dtype": "str"}]}]},
    "struct-deal": {"structures": [{"name": "deal", "fields": [
        {"name": "buyer", "dtype": "str"},
        {"name": "target", "dtype": "str"},
        {"name": "value", "dtype": "str", "description": "Price or amount of the transaction"},
        {"name": "status", "dtype": "str", "choices": ["announced", "completed", "cancelled"]}]}]},
    "struct-incident": {"structures": [{"name": "incident", "fields": [
        {"name": "system", "dtype": "str"},
        {"name": "symptoms", "dtype": "list"},
        {"name": "cause", "dtype": "str"},
        {"name": "severity", "dtype": "str", "choices": ["low", "medium", "high", "critical"]}]}]},
    "struct-patient": {"structures": [{"name": "patient", "fields": [
        {"name": "age", "dtype": "str"},
        {"name": "conditions", "dtype": "list"},
        {"name": "medications", "dtype": "list", "description": "Drugs given or prescribed"},
        {"name": "setting", "dtype": "list", "choices": ["inpatient", "outpatient", "emergency"]}]}]},
    "struct-contract": {"structures": [{"name": "contract", "fields": [
        {"name": "parties", "dtype": "list"},
        {"name": "effective_date", "dtype": "str"},
        {"name": "payment_terms", "dtype": "str"},
        {"name": "governing_law", "dtype": "str"}]}]},
    "struct-match": {"structures": [{"name": "match", "fields": [
        {"name": "winner", "dtype": "str"}, {"name": "loser", "dtype": "str"},
        {"name": "score", "dtype": "str"}, {"name": "venue", "dtype": "str"},
        {"name": "scorers", "dtype": "list"}]}]},
    "struct-contact": {"structures": [{"name": "message", "fields": [
        {"name": "sender", "dtype": "str"}, {"name": "recipients", "dtype": "list"},
        {"name": "action_items", "dtype": "list"},
        {"name": "channel", "dtype": "str", "choices": ["email", "chat", "sms"]}]}]},
    "struct-two": {"structures": [
        {"name": "person", "fields": [{"name": "name", "dtype": "str"}, {"name": "role", "dtype": "str"}]},
        {"name": "place", "fields": [{"name": "name", "dtype": "str"}, {"name": "country", "dtype": "str"}]}]},
    # relations
    "rel-org": {"relations": ["works_for", "located_in", "founded_by"]},
    "rel-org-desc": {"relations": {"works_for": "A person is employed by or leads an organization",
                                   "headquartered_in": "An organization is based in a place",
                                   "acquired": "A company bought another company"}},
    "rel-bio": {"relations": ["treats", "causes", "associated_with"]},
    "rel-sport": {"relations": ["plays_for", "defeated", "scored_against"]},
    "rel-single": {"relations": ["located_in"]},
    # combined
    "combo-news": {"entities": ["person", "organization", "location"],
                   "classifications": [{"task": "topic", "labels": ["politics", "business", "technology",
                                                                    "sports", "health"]}],
                   "relations": ["works_for", "located_in"]},
    "combo-review": {"entities": ["product", "brand"],
                     "classifications": [{"task": "sentiment", "labels": ["positive", "negative", "neutral"]},
                                         {"task": "aspects", "multi_label": True,
                                          "labels": ["price", "quality", "service", "delivery"]}],
                     "structures": [{"name": "opinion", "fields": [
                         {"name": "target", "dtype": "str"}, {"name": "complaints", "dtype": "list"},
                         {"name": "recommend", "dtype": "str", "choices": ["yes", "no"]}]}]},
    "combo-tech": {"entities": {"software": "A program or service", "version": "A version number"},
                   "classifications": [{"task": "type", "labels": ["bug report", "how-to", "announcement"]}],
                   "structures": [{"name": "issue", "fields": [
                       {"name": "component", "dtype": "str"}, {"name": "steps", "dtype": "list"}]}]},
    "combo-full": {"entities": ["person", "organization", "location", "date", "money"],
                   "classifications": [{"task": "sentiment", "labels": ["positive", "negative", "neutral"]},
                                       {"task": "topics", "multi_label": True,
                                        "labels": ["economy", "technology", "health", "sports", "law"]}],
                   "structures": [{"name": "summary", "fields": [
                       {"name": "main_actor", "dtype": "str"}, {"name": "actions", "dtype": "list"},
                       {"name": "tone", "dtype": "str", "choices": ["factual", "opinion"]}]}],
                   "relations": {"works_for": "employment or leadership", "located_in": "physical location"}},
    "combo-bio": {"entities": ["drug", "disease", "person"],
                  "relations": ["treats"],
                  "classifications": [{"task": "evidence", "labels": ["clinical trial", "case report", "review"]}]},
    "combo-legal": {"entities": ["party", "date", "amount"],
                    "structures": [{"name": "obligation", "fields": [
                        {"name": "obligor", "dtype": "str"}, {"name": "duty", "dtype": "str"},
                        {"name": "deadline", "dtype": "str"}]}],
                    "classifications": [{"task": "clause", "multi_label": True,
                                         "labels": ["payment", "termination", "liability", "confidentiality"]}]},
}

# Which schemas suit which domain (realistic pairings), plus generic schemas usable anywhere.
_DOMAIN_SCHEMAS: dict[str, list[str]] = {
    "news": ["ner-news", "ner-news-desc", "cls-topic", "cls-topics-multi", "struct-event", "struct-deal",
             "rel-org", "rel-org-desc", "combo-news", "combo-full", "ner-many", "struct-two"],
    "review": ["ner-product", "cls-sentiment", "cls-sentiment-desc", "cls-aspects-multi", "struct-product",
               "combo-review", "rel-single"],
    "technical": ["ner-tech", "struct-incident", "combo-tech", "cls-urgency", "cls-topics-multi", "rel-org"],
    "finance": ["ner-fin", "struct-deal", "cls-topics-multi", "combo-full", "rel-org-desc", "ner-news-desc"],
    "sports": ["ner-news", "struct-match", "rel-sport", "cls-topic", "combo-news", "ner-single"],
    "biomedical": ["ner-bio", "rel-bio", "struct-patient", "combo-bio", "cls-topics-multi"],
    "legal": ["ner-legal", "struct-contract", "combo-legal", "cls-urgency", "rel-org-desc"],
    "email": ["ner-contact", "struct-contact", "cls-intent", "cls-urgency", "combo-full"],
    "social": ["ner-product", "cls-sentiment", "cls-intent", "ner-news", "combo-review", "cls-topics-multi"],
    "unicode": ["ner-news", "ner-news-desc", "rel-org", "struct-two", "combo-news", "cls-topic"],
    "short": ["ner-news", "ner-single", "cls-sentiment", "struct-event", "rel-single", "combo-full"],
}
_GENERIC = ["ner-many", "cls-sentiment", "cls-topics-multi", "struct-two", "rel-single", "combo-full"]

PAIRS_PER_TEXT = 3
SEED = 20240611


def task_kinds(spec: dict) -> list[str]:
    """Task kinds in a schema spec: entities, classification, multi_label, structures, relations."""
    kinds = []
    if spec.get("entities"):
        kinds.append("entities")
    for cls in spec.get("classifications", []):
        kinds.append("multi_label" if cls.get("multi_label") else "classification")
    if spec.get("structures"):
        kinds.append("structures")
    if spec.get("relations"):
        kinds.append("relations")
    return sorted(set(kinds))


def pairs(limit: int | None = None) -> list[dict]:
    """The corpus: [{"id", "text_id", "domain", "text", "schema_id", "schema", "kinds"}], deterministic.

    Each text gets ``PAIRS_PER_TEXT`` distinct schemas: mostly from its domain's
    pool, one in four from the generic pool. Every schema in ``SCHEMAS`` is used.
    ``limit`` keeps an evenly spread subset (for smoke runs).
    """
    rng = random.Random(SEED)
    out = []
    used = set()
    for text_id, domain, text in texts():
        pool = list(_DOMAIN_SCHEMAS[domain])
        chosen: list[str] = []
        while len(chosen) < PAIRS_PER_TEXT:
            source = _GENERIC if rng.random() < 0.25 else pool
            unused = [s for s in source if s not in used and s not in chosen]
            pick = rng.choice(unused) if unused and rng.random() < 0.5 else rng.choice(source)
            if pick not in chosen:
                chosen.append(pick)
        for schema_id in chosen:
            used.add(schema_id)
            out.append({"id": f"{text_id}|{schema_id}", "text_id": text_id, "domain": domain, "text": text,
                        "schema_id": schema_id, "schema": SCHEMAS[schema_id],
                        "kinds": task_kinds(SCHEMAS[schema_id])})
    # Schemas the draw never reached are paired with the generic-friendly texts.
    spare_texts = [t for t in texts() if t[1] in ("news", "short")]
    for i, schema_id in enumerate(s for s in SCHEMAS if s not in used):
        text_id, domain, text = spare_texts[i % len(spare_texts)]
        out.append({"id": f"{text_id}|{schema_id}", "text_id": text_id, "domain": domain, "text": text,
                    "schema_id": schema_id, "schema": SCHEMAS[schema_id], "kinds": task_kinds(SCHEMAS[schema_id])})
    if limit is not None and limit < len(out):
        step = len(out) / limit
        out = [out[int(i * step)] for i in range(limit)]
    return out


def build_schema(model, spec: dict):
    """The library's schema builder for a spec (what a ``batch_extract`` caller passes)."""
    schema = model.create_schema()
    if spec.get("entities"):
        schema = schema.entities(spec["entities"])
    for cls in spec.get("classifications", []):
        options = {k: v for k, v in cls.items() if k not in ("task", "labels")}
        schema = schema.classification(cls["task"], cls["labels"], **options)
    for structure in spec.get("structures", []):
        builder = schema.structure(structure["name"])
        for field in structure["fields"]:
            builder = builder.field(field["name"], dtype=field.get("dtype", "list"), choices=field.get("choices"),
                                    description=field.get("description"))
        schema = builder.schema
    if spec.get("relations"):
        schema = schema.relations(spec["relations"])
    return schema


def summary() -> dict:
    """Counts by kind and domain, and token-free length figures (for the report)."""
    all_pairs = pairs()
    kinds: dict[str, int] = {}
    domains: dict[str, int] = {}
    for p in all_pairs:
        for k in p["kinds"]:
            kinds[k] = kinds.get(k, 0) + 1
        if len(p["kinds"]) > 1:
            kinds["combined"] = kinds.get("combined", 0) + 1
        domains[p["domain"]] = domains.get(p["domain"], 0) + 1
    words = [len(t[2].split()) for t in texts()]
    return {"pairs": len(all_pairs), "texts": len(texts()), "schemas": len(SCHEMAS), "kinds": kinds,
            "domains": domains, "words_min": min(words), "words_max": max(words)}


if __name__ == "__main__":
    import json

    print(json.dumps(summary(), indent=1))
