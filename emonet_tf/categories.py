"""Emotion category names: the 20 EmoNet outputs and the 27 Cowen & Keltner (2017) categories.

The EmoNet output order is MATLAB's categorical (alphabetical) order, identical in the MATLAB model,
both PyTorch ports and the paper. Spellings are canonical ("Empathic Pain"); `canonical_name`
accepts the variants found in the wild ("Empathetic Pain", "empathic_pain", "sexual desire").
"""

from __future__ import annotations

import re
from typing import Optional

EMONET_CATEGORIES: tuple[str, ...] = (
    "Adoration",
    "Aesthetic Appreciation",
    "Amusement",
    "Anxiety",
    "Awe",
    "Boredom",
    "Confusion",
    "Craving",
    "Disgust",
    "Empathic Pain",
    "Entrancement",
    "Excitement",
    "Fear",
    "Horror",
    "Interest",
    "Joy",
    "Romance",
    "Sadness",
    "Sexual Desire",
    "Surprise",
)

COWEN_KELTNER_CATEGORIES: tuple[str, ...] = (
    "Admiration",
    "Adoration",
    "Aesthetic Appreciation",
    "Amusement",
    "Anger",
    "Anxiety",
    "Awe",
    "Awkwardness",
    "Boredom",
    "Calmness",
    "Confusion",
    "Craving",
    "Disgust",
    "Empathic Pain",
    "Entrancement",
    "Excitement",
    "Fear",
    "Horror",
    "Interest",
    "Joy",
    "Nostalgia",
    "Relief",
    "Romance",
    "Sadness",
    "Satisfaction",
    "Sexual Desire",
    "Surprise",
)

#: Labels of the 34-option rating task that occur in the released label files but are not among the 27.
EXTRA_CORPUS_LABELS: tuple[str, ...] = ("Pride", "Sympathy", "Triumph")

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
