"""PII in training text: Microsoft Presidio's predefined pattern recognizers, run where they can match.

Pure (no printing); presidio-analyzer is imported (it pulls spaCy and, through it, transformers and
torch: 5-15 s) the first time a scanner meets a text that one of its recognizers has to look at (the
gates below): a file in which no text passes a gate is checked without it, with the same findings (none:
every recognizer only ever runs on what its gate passes). Used by advisor/datacheck.py (the check and --pii redact).
No NLP model is loaded unless the caller names one: the pattern recognizers need none. Names and
locations (PERSON, LOCATION) need a spaCy NER model, used only when named (an installed package or a
saved pipeline directory).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

from advisor.errors import UserError

PII_MIN_SCORE = 0.4  # Presidio's phone recognizer scores 0.4 without context words; weaker hits are noise
NLP_ENTITIES = ("PERSON", "LOCATION")

# Presidio predefined pattern recognizers used by default, each run only where it can match: a gate that
# every match of the recognizer implies, and the text it runs on (Python's regex engine needs 50-200 us
# per 1,000-character row per pattern, phonenumbers' matcher ~5 ms; most rows hold no candidate at all).
# (class name, entity, digits, pad): with ``digits``, the recognizer runs on the text within ``pad``
# characters of each cluster of digit runs (runs at most 3 characters apart) holding that many digits:
# a phone number has >= 7 digits, a card >= 12, an SSN 9, an NHS number 10, an IPv4 address 4, an IBAN its
# check digits and account digits. Without: the whole text, when the gate in ``_whole_text_gate`` passes.
# benchmarks/data_check.py measures recall on planted entities.
PII_RECOGNIZERS: tuple[tuple[str, str, int | None, int], ...] = (
    ("EmailRecognizer", "EMAIL_ADDRESS", None, 0),
    ("PhoneRecognizer", "PHONE_NUMBER", 7, 24),
    ("CreditCardRecognizer", "CREDIT_CARD", 12, 24),
    ("IbanRecognizer", "IBAN_CODE", 4, 48),
    ("IpRecognizer", "IP_ADDRESS", 4, 24),  # IPv4; IPv6 through the whole-text gate below
    ("UsSsnRecognizer", "US_SSN", 9, 16),
    ("NhsRecognizer", "UK_NHS", 10, 16),
    ("CryptoRecognizer", "CRYPTO", None, 0),
    ("MacAddressRecognizer", "MAC_ADDRESS", None, 0),
)
_DIGIT_RUN = re.compile(r"\d+")
_NON_DIGITS = bytes(i for i in range(256) if not 48 <= i <= 57)
_LONG_TOKEN = re.compile(r"[0-9A-Za-z]{26}")
_IPV6 = re.compile(r":[0-9A-Fa-f]{0,4}:")  # every IPv6 address has two colons at most 4 hex digits apart


def _whole_text_gate(entity: str, text: str, digits: int) -> bool:
    if entity == "EMAIL_ADDRESS":
        return "@" in text
    if entity == "IP_ADDRESS":
        return _IPV6.search(text) is not None
    if entity == "CRYPTO":  # bitcoin addresses: '1...', '3...' or 'bc1...', 26+ characters without a space
        return digits > 0 and _LONG_TOKEN.search(text) is not None
    if entity == "MAC_ADDRESS":  # six hex pairs joined by five ':' or '-'
        return text.count(":") >= 5 or text.count("-") >= 5
    return False


def _digit_clusters(text: str) -> list[list[int]]:
    """[start, end, digits] of runs of digits at most 3 characters apart."""
    clusters: list[list[int]] = []
    for m in _DIGIT_RUN.finditer(text):
        lo, hi = m.span()
        if clusters and lo - clusters[-1][1] <= 3:
            clusters[-1][1] = hi
            clusters[-1][2] += hi - lo
        else:
            clusters.append([lo, hi, hi - lo])
    return clusters


def _windows(text: str, clusters: list[list[int]], min_digits: int, pad: int) -> list[tuple[int, str]]:
    """(offset, part) of ``text`` within ``pad`` characters of each cluster with ``min_digits``, merged."""
    spans: list[list[int]] = []
    for c0, c1, n in clusters:
        if n < min_digits:
            continue
        lo, hi = max(0, c0 - pad), min(len(text), c1 + pad)
        if spans and lo <= spans[-1][1]:
            spans[-1][1] = hi
        else:
            spans.append([lo, hi])
    return [(lo, text[lo:hi]) for lo, hi in spans]


# phonenumbers finds a "valid" number in ISO dates (2019-11-21 parses in several regions): not reported
_DATE = re.compile(r"(?:19|20)\d\d[-/.](?:0?[1-9]|1[0-2])[-/.](?:0?[1-9]|[12]\d|3[01])")


def _resolve(text: str, hits: list[tuple[str, float, int, int]]) -> list[tuple[str, float, int, int]]:
    """A phone number that holds an ISO date, or that overlaps an IP address, card, SSN or IBAN (digits the
    phone matcher also reads), is dropped; so is an NHS number inside an international phone number ('+1 212-
    783-4771': 1 in 11 ten-digit numbers passes the NHS check digit). One hit per span and kind."""
    specific = [(a, b) for k, _, a, b in hits if k in ("IP_ADDRESS", "CREDIT_CARD", "US_SSN", "IBAN_CODE")]
    intl_phones = [(a, b) for k, _, a, b in hits if k == "PHONE_NUMBER" and text[a:b].lstrip().startswith("+")]
    out, seen = [], set()
    for kind, score, a, b in hits:
        if kind == "PHONE_NUMBER" and (_DATE.search(text[a:b]) or any(a < y and x < b for x, y in specific)):
            continue
        if kind == "UK_NHS" and any(x <= a and b <= y for x, y in intl_phones):
            continue
        if (kind, a, b) not in seen:
            seen.add((kind, a, b))
            out.append((kind, score, a, b))
    return out


def _pattern_recognizers() -> list:
    """Presidio's predefined pattern recognizers of PII_RECOGNIZERS, in its order (imports Presidio: seconds)."""
    import logging

    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
    try:
        from presidio_analyzer import predefined_recognizers as pr
    except ImportError:
        raise UserError("the PII check needs presidio-analyzer: pip install 'sftplan[data]'") from None
    import tldextract

    offline = tldextract.TLDExtract(suffix_list_urls=())  # the bundled suffix list: no download at run time

    class _OfflineEmail(pr.EmailRecognizer):
        def validate_result(self, pattern_text: str):  # same test as Presidio's, without the network
            return offline(pattern_text).fqdn != ""

    return [_OfflineEmail() if cls_name == "EmailRecognizer" else getattr(pr, cls_name)()
            for cls_name, _, _, _ in PII_RECOGNIZERS]


def pii_scanner(spacy_model: str | None = None) -> Callable[[str], list[tuple[str, float, int, int]]]:
    """text -> [(entity kind, score, start, end)]. Presidio's pattern recognizers, instantiated directly (no
    AnalyzerEngine, no NLP model), on the first text a gate passes; with ``spacy_model`` (an installed
    spaCy package) also PERSON and LOCATION through Presidio's spaCy NLP engine, on every text (loaded now)."""
    import importlib.util

    if importlib.util.find_spec("presidio_analyzer") is None:  # said now, not after a long file's first candidate
        raise UserError("the PII check needs presidio-analyzer: pip install 'sftplan[data]'")
    recognizers: list = []  # built on first need
    nlp = None
    if spacy_model:
        nlp = _nlp_analyzer(spacy_model)

    def scan(text: str) -> list[tuple[str, float]]:
        found = []
        digits = len(text.encode("utf-8", "ignore").translate(None, _NON_DIGITS))
        clusters = []
        if digits >= 4:  # ISO dates masked: no reported entity holds one (see _resolve), and they are common
            clusters = _digit_clusters(_DATE.sub(lambda m: " " * len(m.group()), text) if digits >= 8 else text)
        for i, (_, entity, min_digits, pad) in enumerate(PII_RECOGNIZERS):
            parts = _windows(text, clusters, min_digits, pad) if min_digits is not None and digits >= min_digits else []
            if _whole_text_gate(entity, text, digits):
                parts = [(0, text)]
            if parts and not recognizers:
                recognizers.extend(_pattern_recognizers())
            rec = recognizers[i] if parts else None
            for offset, part in parts:
                for r in rec.analyze(part, [entity], None):
                    if r.score >= PII_MIN_SCORE:
                        found.append((r.entity_type, r.score, offset + r.start, offset + r.end))
        if nlp is not None:
            found += [(r.entity_type, r.score, r.start, r.end)
                      for r in nlp.analyze(text=text, entities=list(NLP_ENTITIES), language="en") if r.score >= PII_MIN_SCORE]
        return _resolve(text, found)

    return scan


def _nlp_analyzer(spacy_model: str):
    import importlib.util

    if not Path(spacy_model).is_dir() and importlib.util.find_spec(spacy_model) is None:
        raise UserError(f"{spacy_model!r} is neither an installed spaCy model package nor a saved "
                        f"pipeline directory (python -m spacy download {spacy_model})", field="spacy_model")
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    engine = NlpEngineProvider(nlp_configuration={
        "nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": spacy_model}]}).create_engine()
    return AnalyzerEngine(nlp_engine=engine, supported_languages=["en"])
