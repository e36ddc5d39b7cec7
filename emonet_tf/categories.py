"""Emotion category names: the 20 EmoNet outputs and the 27 Cowen & Keltner (2017) categories.

The EmoNet output order is MATLAB's categorical (alphabetical) order, identical in the MATLAB model,
both PyTorch ports and the paper. Spellings are canonical ("Empathic Pain"); `canonical_name`
accepts the variants found in the wild ("Empathetic Pain", "empathic_pain", "sexual desire").
"""
from __future__ import annotations

import re
from typing import Optional

EMONET_CATEGORIES: tuple[str, ...] = (
    "Adoration", "Aesthetic Appreciation", "Amusement", "Anxiety", "Awe",
    "Boredom", "Confusion", "Craving", "Disgust", "Empathic Pain",
    "Entrancement", "Excitement", "Fear", "Horror", "Interest",
    "Joy", "Romance", "Sadness", "Sexual Desire", "Surprise",
)

COWEN_KELTNER_CATEGORIES: tuple[str, ...] = (
    "Admiration", "Adoration", "Aesthetic Appreciation", "Amusement", "Anger",
    "Anxiety", "Awe", "Awkwardness", "Boredom", "Calmness",
    "Confusion", "Craving", "Disgust", "Empathic Pain", "Entrancement",
    "Excitement", "Fear", "Horror", "Interest", "Joy",
    "Nostalgia", "Relief", "Romance", "Sadness", "Satisfaction",
    "Sexual Desire", "Surprise",
)

#: The 7 Cowen & Keltner categories that EmoNet does not predict.
DROPPED_CATEGORIES: tuple[str, ...] = tuple(c for c in COWEN_KELTNER_CATEGORIES if c not in EMONET_CATEGORIES)

#: Labels of the 34-option rating task that occur in the released label files but are not among the 27.
EXTRA_CORPUS_LABELS: tuple[str, ...] = ("Pride", "Sympathy", "Triumph")

NUM_EMONET_CATEGORIES = len(EMONET_CATEGORIES)

_ALIASES = {"empathetic pain": "Empathic Pain", "aesthetic appreciation": "Aesthetic Appreciation"}
_KNOWN = {c.lower(): c for c in COWEN_KELTNER_CATEGORIES + EXTRA_CORPUS_LABELS}


def canonical_name(name: str) -> Optional[str]:
    """Returns the canonical spelling of an emotion label, or None when the label is unknown.

    Case, underscores, hyphens, dots and repeated blanks are ignored ("sexual_desire", "Sexual.Desire").
    """
    key = re.sub(r"[\s_.\-]+", " ", str(name)).strip().lower()
    if key in _ALIASES:
        return _ALIASES[key]
    return _KNOWN.get(key)


def emonet_index(name: str) -> Optional[int]:
    """Index of a label among the 20 EmoNet outputs, or None if EmoNet has no such output."""
    canon = canonical_name(name)
    return EMONET_CATEGORIES.index(canon) if canon in EMONET_CATEGORIES else None


def cowen_keltner_index(name: str) -> Optional[int]:
    """Index of a label among the 27 Cowen & Keltner categories, or None if it is not one of them."""
    canon = canonical_name(name)
    return COWEN_KELTNER_CATEGORIES.index(canon) if canon in COWEN_KELTNER_CATEGORIES else None


#: EMONET_TO_COWEN_KELTNER[i] is the index among the 27 of EmoNet output i.
EMONET_TO_COWEN_KELTNER: tuple[int, ...] = tuple(COWEN_KELTNER_CATEGORIES.index(c) for c in EMONET_CATEGORIES)

#: COWEN_KELTNER_TO_EMONET[j] is the EmoNet output index of Cowen & Keltner category j, or -1 if dropped.
COWEN_KELTNER_TO_EMONET: tuple[int, ...] = tuple(
    EMONET_CATEGORIES.index(c) if c in EMONET_CATEGORIES else -1 for c in COWEN_KELTNER_CATEGORIES)
