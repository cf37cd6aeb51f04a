"""The local model as a reader: does this paper's evidence answer the question? Yes or No, as log-odds.

Term statistics tell a question about a topic no paper covers; they cannot tell the right topic with
the wrong detail (the right disease but another drug, the right method on another kind of data). A
small instruction model reading the paper's best few sentences can. Nothing is generated: the prompt
is evaluated once and the logits of the first answer token are read ("Yes" against "No"), so a
judgment costs one prompt's prefill (~150 tokens), and the fixed instruction before the question is
kept evaluated between calls.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from rag.errors import LLMError

_SYSTEM = (
    "You check whether a research paper answers a question. Read the question and the paper's excerpt. "
    "Answer Yes only if the excerpt itself states what the question asks for (the same topic AND every "
    "specific detail the question names: the method, data, population, organism, setting or number). "
    "Answer No if the paper is only related, or if a detail the question asks about is missing."
)
_PREFIX = f"<|im_start|>system\n{_SYSTEM}<|im_end|>\n<|im_start|>user\n"

_TAIL_TOKENS = 48  # the closing question and the reply's start, kept whole when a long excerpt is cut

_GAP_SYSTEM = "You read a research paper's abstract and say whether it mentions a given thing. Answer Yes or No."
_GAP_PREFIX = f"<|im_start|>system\n{_GAP_SYSTEM}<|im_end|>\n<|im_start|>user\n"


def judge_prompt(question: str, title: str, sentences: Sequence[str]) -> str:
    """The user turn and the start of the reply; the system turn before it is the fixed `_PREFIX`."""
    excerpt = " ".join(" ".join(sentences).split())
    return (
        f"Question: {' '.join(question.split())}\n\nPaper: {title}\nExcerpt: {excerpt}\n\n"
        "Does this paper answer the question? Answer Yes or No.<|im_end|>\n<|im_start|>assistant\n"
    )


def gap_prompt(title: str, text: str, phrase: str) -> str:
    """Does the paper's text (title and abstract, as the judge read them) mention what the term statistics found
    missing from it (`phrase`, the question's words)? The question itself is left out: with it, the 1.5B model
    says Yes to the paper it is shown."""
    return (
        f"Title: {title}\nAbstract: {' '.join(text.split())}\n\n"
        f"Does this abstract mention {phrase}? Answer Yes or No.<|im_end|>\n<|im_start|>assistant\n"
    )


def fit_tokens(tokens: list[int], room: int, tail: int = _TAIL_TOKENS) -> list[int]:
    """A prompt cut to `room` tokens in the middle: the excerpt's end goes, the question after it stays. Kept
    from the start instead, a 20,000-character document loses the question, and the 1.5B model then answers
    Yes (+6.0 log-odds on a long weather abstract asked about a diffusion model; +0.3 with the question kept)."""
    return tokens if len(tokens) <= room else tokens[: room - tail] + tokens[-tail:]


class ModelJudge:
    """A llama.cpp model kept loaded for Yes/No judgments (one at a time: the context is shared)."""

    def __init__(
        self, model: str, model_dir: Path, n_threads: int | None = None, progress: Callable[[str], None] | None = None
    ) -> None:
        self._model, self._model_dir, self._threads, self._progress = model, model_dir, n_threads, progress
        self._llama = None
        self._yes: list[int] = []
        self._no: list[int] = []
        self._lock = threading.Lock()
        self.name = f"llamacpp:{Path(model).stem if model.endswith('.gguf') else model}"

    def load(self):  # -> llama_cpp.Llama
        if self._llama is not None:
            return self._llama
        from rag.models import resolve_gguf

        path = resolve_gguf(self._model, self._model_dir, self._progress)
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        try:
            from llama_cpp import Llama
        except ImportError:
            raise LLMError("llama-cpp-python is not installed (make setup); the judge model needs it") from None
        try:
            self._llama = Llama(
                model_path=str(path), n_ctx=1024, n_batch=512, n_threads=self._threads or os.cpu_count(), verbose=False
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise LLMError(f"cannot load judge model {path}: {str(exc).splitlines()[0]}") from None
        tokens = [self._llama.tokenize(w.encode(), add_bos=False, special=False) for w in ("Yes", "No", "yes", "no")]
        self._yes = [t[0] for t in tokens[:1] + tokens[2:3]]
        self._no = [t[0] for t in tokens[1:2] + tokens[3:4]]
        return self._llama

    def log_odds(self, question: str, title: str, sentences: Sequence[str]) -> float:
        """log P(Yes) - log P(No) for the first reply token; > 0 leans to 'answers'."""
        return self._yes_no(_PREFIX + judge_prompt(question, title, sentences))

    def mentions(self, title: str, text: str, phrase: str) -> float:
        """Yes-vs-No log-odds that the paper's text mentions `phrase` (a part of the question none of its words
        state): the term statistics find the gap, the model reads whether other words fill it."""
        return self._yes_no(_GAP_PREFIX + gap_prompt(title, text, phrase))

    def _yes_no(self, prompt: str) -> float:
        import numpy as np

        with self._lock:
            llama = self.load()
            tokens = llama.tokenize(prompt.encode(), add_bos=False, special=True)
            tokens = fit_tokens(tokens, llama.n_ctx() - 1)
            common = 0
            for held, wanted in zip(llama.input_ids[: llama.n_tokens], tokens, strict=False):
                if held != wanted:
                    break
                common += 1
            common = min(common, len(tokens) - 1)  # at least one token evaluated, so its logits are fresh
            llama.n_tokens = common
            try:
                llama.eval(tokens[common:])
            except (RuntimeError, ValueError) as exc:
                llama.reset()
                raise LLMError(f"the judge model failed: {str(exc).splitlines()[0]}") from None
            logits = np.ctypeslib.as_array(llama._ctx.get_logits(), shape=(llama.n_vocab(),))
            top = float(logits.max())
            yes = math.log(sum(math.exp(float(logits[t]) - top) for t in self._yes))
            no = math.log(sum(math.exp(float(logits[t]) - top) for t in self._no))
            return yes - no


def load_judge_model(settings, progress: Callable[[str], None] | None = None) -> ModelJudge | None:
    """The judge's model for these settings (rag.config.Settings), not yet loaded; None when none is set."""
    name = settings.answer.judge_model
    if not name:
        return None
    return ModelJudge(name, Path(os.path.expanduser(settings.llm.model_dir)), settings.llm.n_threads, progress)
