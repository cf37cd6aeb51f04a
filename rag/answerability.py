"""Can the retrieved abstracts answer the question at all? Checked before any answer is written.

Similarity alone cannot tell "near the topic" from "answers it": a question about RLHF for *video*
LLMs lands next to the RLHF papers on *images*, and "what learning rate does Cambrian-1 use?" finds
Cambrian-1 itself. What such a question adds is a facet the evidence must state: a modality or
domain (video, audio, 3D point clouds, proteins), a kind of paper (a benchmark, a survey), or a
detail abstracts seldom give (hardware, learning rate, licence, cost, latency, affiliations). A
paper can answer only if its title or abstract states every facet the question asks for; when no
retrieved paper does, the answer says which facet is missing instead of answering the nearest
topic. Pure functions of text; the table below is the whole mechanism.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Facet:
    """Something a question can ask for that a paper's abstract must state to answer it."""

    name: str  # how the answer names it: "video", "a licence"
    kind: str  # "modality" | "domain" | "paper type" | "detail"
    asked: re.Pattern[str]  # the question asks for it
    stated: re.Pattern[str]  # a title or abstract states it


def _facet(name: str, kind: str, asked: str, stated: str | None = None) -> Facet:
    return Facet(name, kind, re.compile(asked, re.I), re.compile(stated or asked, re.I))


_VIDEO = r"\bvideos?\b|\bmovies?\b|\bfilms?\b|\bframes\b|\btemporal\b|\bclips\b|\bego(centric)?\b"
_AUDIO = r"\baudio\b|\bsounds?\b|\bspeech\b|\bspoken\b|\bacoustic|\bvoices?\b|\bmusic|\blistening\b|\bhearing\b"

FACETS: tuple[Facet, ...] = (
    # modalities and domains: what the work is about
    _facet("video", "modality", r"\bvideos?\b|\bmovies?\b|\bfilms?\b|\bvideo-", _VIDEO),
    _facet("audio or speech", "modality", _AUDIO + r"|\btext-to-audio\b", _AUDIO),
    _facet("music", "modality", r"\bmusic|\bsongs?\b|\bmelod", r"\bmusic|\bsongs?\b|\bmelod"),
    _facet("3D data", "modality", r"\b3d\b|\bpoint[- ]clouds?\b|\blidar\b|\bmesh(es)?\b|\bvoxels?\b"),
    _facet("sign language", "domain", r"\bsign languages?\b"),
    _facet("brain signals", "domain", r"\bbrain\b|\bfmri\b|\beeg\b|\bmeg\b|\bseeg\b|\bneural recordings?\b|\bneuro"),
    _facet(
        "medicine",
        "domain",
        r"\bmedic|\bclinic|\bpatients?\b|\bradiolog|\bx-rays?\b|\bultrasound\b|\bmri\b|"
        r"\bct (scans?|images?)\b|\bpatholog|\bhealth|\bdisease|\bsurviv",
    ),  # fmt: skip
    _facet("remote sensing", "domain", r"\bsatellite|\bremote sensing\b|\baerial\b|\burban\b"),
    _facet("robotics", "domain", r"\brobot|\bembodied\b|\bmanipulation\b"),
    _facet("graphs", "domain", r"\bgraphs?\b|\bgnns?\b"),
    _facet(
        "biology or chemistry",
        "domain",
        r"\bproteins?\b|\bmolecul|\bdrugs?\b|\bgenom|\bgenes?\b|\bdna\b|"
        r"\brna\b|\bcells?\b|\bchemi|\bcasp\d*\b|\benzym",
    ),  # fmt: skip
    _facet("finance", "domain", r"\bstocks?\b|\bfinanc|\btrading\b|\bstock market\b|\bcredit\b"),
    _facet("web pages or agents", "domain", r"\bweb\b|\bwebsites?\b|\bbrows|\bwebpages?\b|\bhtml\b|\bgui\b"),
    _facet("recommendation", "domain", r"\brecommend|\bclick-through\b|\bctr\b|\be-?commerce\b"),
    _facet("infrared or thermal images", "modality", r"\binfrared\b|\bthermal\b", r"\binfrared\b|\bthermal\b|\bir\b"),
    _facet("federated learning", "domain", r"\bfederated\b"),
    _facet("spiking networks", "domain", r"\bspiking\b|\bneuromorphic\b"),
    _facet(
        "reinforcement learning",
        "domain",
        r"\breinforcement learning\b|\brlhf\b|\brlaif\b|\bpolicy gradient\b|"
        r"\breward",
        r"\breinforcement\b|\brlhf\b|\brlaif\b|\brl\b|\bpolicy\b|\breward",
    ),  # fmt: skip
    # kinds of paper
    _facet(
        "a survey",
        "paper type",
        r"\bsurvey|\breview of\b|\breviews\b|\boverview of\b",
        r"\bsurvey|\breview|\boverview|\btutorial|\bsystematic(ally)? (study|analysis)",
    ),  # fmt: skip
    # details an abstract seldom states
    _facet(
        "the training hardware or compute",
        "detail",
        r"\bgpus?\b|\btpus?\b|\bhardware\b|\bgpu[- ]hours?\b|"
        r"\bgpu[- ]days?\b|\bcompute budget\b|\ba100\b|\bh100\b|\bv100\b",
        r"\bgpus?\b|\btpus?\b|\bhardware\b|\ba100\b|\bh100\b|\bv100\b|\bgpu[- ]hours?\b|\bgpu[- ]days?\b",
    ),
    _facet(
        "training hyperparameters",
        "detail",
        r"\blearning[- ]rates?\b|\bbatch[- ]sizes?\b|\bepochs?\b|"
        r"\bweight decay\b|\bwarm-?up\b|\bhyper-?parameters?\b|\boptimi[sz]er\b",
    ),
    _facet("a licence", "detail", r"\blicen[cs]e", r"\blicen[cs]|\bcc[- ]by\b|\bapache 2"),
    _facet(
        "the authors' affiliations",
        "detail",
        r"\buniversit|\binstitut|\baffiliat|\blab(oratory)?s? (are|is|"
        r"were|was)\b|\bwhich (company|companies|lab|labs|team)\b|\bauthors? (from|work)\b",
        r"\buniversit|\binstitut|\baffiliat",
    ),
    _facet(
        "a cost",
        "detail",
        r"\bcost\b|\bcosts\b|\bmoney\b|\bprice\b|\bdollars?\b|\busd\b|\$|\bpaid\b|\bpay\b|"
        r"\bapi (cost|bill|fees?)\b|\bbudget\b",
        r"\$|\bdollars?\b|\busd\b|\bcost|\bprice|\bpaid\b|\bbudget",
    ),
    _facet(
        "a latency or run time",
        "detail",
        r"\blatency\b|\bmilliseconds?\b|\bms\b|\bper[- ]\w+ (time|latency)\b|"
        r"\bwall[- ]clock\b|\bseconds? per\b|\bfps\b",
        r"\blatency\b|\bmilliseconds?\b|\d\s?ms\b|\d\s?(s|seconds?)\b|\bfps\b",
    ),
    _facet(
        "the annotators",
        "detail",
        r"\bannotators?\b|\bcrowd[- ]?workers?\b|\blabell?ers?\b|\bhow many people\b",
        r"\bannotators?\b|\bcrowd|\blabell?ers?\b|\bhuman annotat|\bexperts?\b",
    ),
    _facet(
        "a release date or code",
        "detail",
        r"\bwhen (was|were|did)\b.{0,40}\b(released?|published|"
        r"open-sourced)\b|\brelease date\b|\bgithub\b",
        r"\breleased?\b|\bgithub|\bavailable at\b",
    ),
)


def asked_facets(question: str) -> list[Facet]:
    """The facets a question asks for, in table order; a modality offered as one alternative among others
    ("images or audio", "image, audio or text instructions") is not required."""
    return [
        facet
        for facet in FACETS
        if (match := facet.asked.search(question)) and not (facet.kind == "modality" and _alternative(question, match))
    ]


def _alternative(question: str, match: re.Match[str]) -> bool:
    before = question[max(0, match.start() - 30) : match.start()].lower()
    after = question[match.end() : match.end() + 30].lower()
    return bool(re.search(r"\bor\s+(\w+\s+)?$", before) or re.match(r"^[\w-]*\s*(,|or\b)", after))


def missing_facets(facets: Iterable[Facet], paper_text: str) -> list[Facet]:
    """The facets a paper's title and abstract never state."""
    return [facet for facet in facets if not facet.stated.search(paper_text)]


@dataclass(frozen=True)
class Coverage:
    """What each candidate paper lacks; `answering` are the papers that state every asked facet, in rank order."""

    asked: list[Facet]
    missing_by_paper: dict[str, list[Facet]]

    @property
    def answering(self) -> list[str]:
        return [pid for pid, missing in self.missing_by_paper.items() if self.answers(missing)]

    def answers(self, missing: Sequence[Facet]) -> bool:
        """A paper answers when it states every asked facet, except that a question listing several modalities
        ("images or audio", "video, audio and IMU") is answered by a paper stating all but one of them."""
        modalities = sum(f.kind == "modality" for f in self.asked)
        missed_modalities = sum(f.kind == "modality" for f in missing)
        if any(f.kind != "modality" for f in missing):
            return False
        return missed_modalities == 0 or (modalities >= 2 and missed_modalities <= modalities - 1 and modalities > 2)

    def among(self, paper_ids: Sequence[str]) -> Coverage:
        """The same check restricted to some of the papers."""
        return Coverage(self.asked, {pid: self.missing_by_paper[pid] for pid in paper_ids})

    def missing_everywhere(self) -> list[Facet]:
        """Facets that no candidate states (empty when some paper states each, even if no paper states all)."""
        return [f for f in self.asked if all(f in missing for missing in self.missing_by_paper.values())]

    def least_missing(self) -> list[Facet]:
        """What the closest paper lacks: the facets to name when no paper states them all."""
        if not self.missing_by_paper:
            return list(self.asked)
        return min(self.missing_by_paper.values(), key=len)


def check_coverage(question: str, papers: Sequence[tuple[str, str]]) -> Coverage:
    """`papers` are (paper_id, title + abstract) in rank order."""
    asked = asked_facets(question)
    return Coverage(asked, {pid: missing_facets(asked, text) for pid, text in papers})
