"""Conversation state: chat history in any reasonable shape, and follow-up questions made standalone.

A follow-up such as "What accuracy does its model reach?" means nothing to a retriever on its
own; `is_follow_up` spots the words that lean on the previous turn, and `concat_standalone`
joins the question to the one it follows (the cheap, predictable default; the model can rewrite
it instead, see `answer.condense`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from rag.types import Answer, Turn

HistoryItem = Turn | Answer | tuple[str, str] | Mapping[str, Any]

_FOLLOW_UP = re.compile(
    r"\b(it|its|it's|they|them|their|theirs|this|that|these|those|he|she|his|her|"
    r"the (paper|papers|model|models|method|approach|benchmark|dataset|authors|work|study|system|framework))\b"
    r"|^(and|also|what about|how about)\b",
    re.I,
)


_REFERS_BACK = re.compile(
    r"\b(it|its|it's|they|them|their|theirs|this|that|these|those|he|she|his|her|"
    r"the (paper|papers|model|models|method|approach|benchmark|dataset|authors|work|study|system|framework))\b",
    re.I,
)


def refers_back(question: str) -> bool:
    """Whether a follow-up points at what was just discussed ('its model'), not at a new topic ('what about X')."""
    return bool(_REFERS_BACK.search(question))


def is_follow_up(question: str) -> bool:
    """Whether a question leans on the previous turn ('its model', 'that paper', 'what about ...')."""
    return bool(_FOLLOW_UP.search(question))


def to_turns(history: Sequence[HistoryItem]) -> list[Turn]:
    turns = []
    for item in history:
        if isinstance(item, Turn):
            turns.append(item)
        elif isinstance(item, Answer):
            turns.append(item.as_turn())
        elif isinstance(item, Mapping):
            turns.append(Turn(str(item.get("question", "")), str(item.get("answer", ""))))
        else:
            question, answer = item
            turns.append(Turn(str(question), str(answer)))
    return turns


def concat_standalone(question: str, previous: Turn) -> str:
    earlier = previous.standalone_question or previous.question
    return f"{question} (follow-up to: {earlier})"
