"""Hybrid retrieval: articles ranked by fused BM25 and dense scores, with abstention.

`HybridRetriever` implements `Retriever` and adds `search_with_confidence`, which also
returns the calibrated probability (see `knowledge.abstain`) that the knowledge base answers
the query at all.

Ranking is per article, not per chunk: an article's dense score is its best chunk's cosine,
its keyword score is BM25 over the whole article, and the two are fused on z-scores (see
`fuse_scores`); each ranked article then contributes its chunk closest in meaning. Measured
on TechQA (337 articles, 1337 chunks, 384 answerable questions), against the chunk-level
RRF with two chunks per article that this replaced: hit@1 0.766 -> 0.812, hit@5 0.904 ->
0.935, MRR@10 0.825 -> 0.864.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from bot.types import Citation, Passage
from knowledge.abstain import DEFAULT_PATH, FEATURES, AbstentionModel
from knowledge.bm25 import BM25Index
from knowledge.embeddings import Embedder, query_text
from knowledge.index import VectorIndex
from knowledge.retriever import VersionWatcher
from knowledge.spelling import SpellingFixer

Mode = Literal["hybrid", "bm25", "dense"]
Fusion = Literal["score", "rrf"]
Indices = npt.NDArray[np.intp]
Scores = npt.NDArray[np.float64]

# The dense share of the fused score, tuned on the fitting half of TechQA's `evaluate.split`
# (0.5-0.8 all within 0.01 of each other; 0.7 had the best MRR@10 there: 0.860).
DENSE_WEIGHT = 0.7
# The least spread of article cosines that z-scoring trusts. A one-word query ("clearance")
# is noise to the embedding: every cosine sits near 0.15 (spread 0.05 on the demo help
# center) and dividing by that spread would make the noise outvote the one article that has
# the word. On TechQA the spread is 0.07-0.15 (5th-95th percentile) and the floor changes no
# ranking metric; from 0.1 up hit@5 on the fitting half drops (0.928 -> 0.923).
DENSE_SPREAD_FLOOR = 0.08


def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]], k: int = 60) -> dict[int, float]:
    """Sum of 1 / (k + rank) over the rankings each item appears in (rank from 1).

    The `fusion="rrf"` alternative to `fuse_scores`; on TechQA articles it measured hit@5
    0.922, MRR@10 0.847 (k from 10 to 100 alike) against 0.935, 0.864 for `fuse_scores`."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            fused[item] = fused.get(item, 0.0) + 1.0 / (k + rank)
    return fused


def zscore(scores: npt.ArrayLike, floor: float = 0.0) -> Scores:
    """`scores` centred on their mean in units of their standard deviation, or of `floor`
    when that is larger (all 0 if flat)."""
    x = np.asarray(scores, dtype=np.float64)
    spread = max(float(x.std()), floor) if len(x) else 0.0
    return (x - x.mean()) / spread if spread > 0 else np.zeros_like(x)


def fuse_scores(
    dense: npt.ArrayLike, bm25: npt.ArrayLike, dense_weight: float = DENSE_WEIGHT
) -> Scores:
    """`dense_weight`·z(dense) + (1 − `dense_weight`)·z(bm25), one value per article (the
    cosines' spread taken as at least `DENSE_SPREAD_FLOOR`).

    Z-scores put cosines and unbounded BM25 sums on one scale and keep how far the best
    stands out, which ranks alone lose. Measured on TechQA articles (hit@5 / MRR@10): RRF
    0.922 / 0.847, min-max scaling 0.935 / 0.865, z-scores 0.935 / 0.864 (z chosen: one
    outlier article cannot squash every other score, as it can with min-max).
    """
    dense_z = zscore(dense, DENSE_SPREAD_FLOOR)
    return dense_weight * dense_z + (1.0 - dense_weight) * zscore(bm25)


def promote_tops(fused_order: Sequence[int], tops: Sequence[int]) -> list[int]:
    """The fused best first, then each ranker's own best, then the rest in fused order.

    Helped chunk-level RRF (TechQA hit@5 0.901 -> 0.914), which buries what one ranker puts
    first and the other misses. With score fusion over articles it is a wash (hit@5 0.935 ->
    0.938, MRR@10 0.864 -> 0.863; on the fitting half hit@5 unchanged, MRR@10 0.860 ->
    0.859), so `keep_tops` is off by default.
    """
    head = list(fused_order[:1])
    promoted = [t for t in dict.fromkeys(tops) if t not in head]
    return head + promoted + [i for i in fused_order[1:] if i not in promoted]


def round_robin(groups: Sequence[Sequence[int]], cap: int | None, limit: int) -> list[int]:
    """The first item of every group in group order, then every group's second, and so on:
    at most `cap` per group (None: no cap), at most `limit` in all.

    Groups are articles best first, each its chunks best first, so every article shows its
    best chunk before any shows a second. Two chunks per article in the top five, placed by
    their article's score plus a share of their own, measured worse on TechQA: hit@5 0.935
    -> 0.901-0.911, MRR@10 0.864 -> 0.843-0.847.
    """
    picked: list[int] = []
    depth = max((len(g) for g in groups), default=0)
    for level in range(depth if cap is None else min(cap, depth)):
        for group in groups:
            if level < len(group):
                picked.append(group[level])
                if len(picked) == limit:
                    return picked
    return picked


def mmr(
    candidates: Sequence[int],
    relevance: Sequence[float],
    vectors: npt.NDArray[np.float32],
    k: int,
    lambda_: float,
) -> list[int]:
    """Maximal marginal relevance: greedily pick `lambda_`·relevance − (1−`lambda_`)·(max
    cosine to a picked item). `vectors` are the candidates' normalized rows, in order."""
    if not candidates:
        return []
    rel = np.asarray(relevance, dtype=np.float64)
    rel = rel / rel.max() if rel.max() > 0 else rel  # put positive scores on [0, 1]
    similarity = vectors @ vectors.T
    picked: list[int] = []
    closest = np.full(len(candidates), -np.inf)
    remaining = np.ones(len(candidates), dtype=bool)
    for _ in range(min(k, len(candidates))):
        penalty = np.where(np.isfinite(closest), closest, 0.0)
        gain = np.where(remaining, lambda_ * rel - (1 - lambda_) * penalty, -np.inf)
        best = int(np.argmax(gain))
        picked.append(best)
        remaining[best] = False
        closest = np.maximum(closest, similarity[best])
    return [candidates[i] for i in picked]


@dataclass(frozen=True)
class Retrieval:
    """One search: passages best first, the abstention features, and the confidence (the
    probability that the knowledge base answers; NaN without an abstention model)."""

    passages: list[Passage]
    features: tuple[float, ...]
    confidence: float


@dataclass(frozen=True)
class _Loaded:
    """The index with its article structure: `by_article` lists chunk indices grouped by
    article, article `a`'s from `starts[a]` to `starts[a + 1]`; `bm25` is over articles."""

    index: VectorIndex
    bm25: BM25Index
    by_article: Indices
    starts: Indices
    grouped: bool  # chunks already stored article by article: `by_article` is the identity
    spelling: SpellingFixer

    def by_article_order(self, scores: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Per-chunk `scores` in `by_article` order (no copy when already grouped)."""
        return scores if self.grouped else scores[self.by_article]

    def articles_of(self, sources: Sequence[str]) -> list[int]:
        """The article numbers of `sources` (unknown ones left out), in that order."""
        if not sources:
            return []
        number = {
            self.index.chunks[int(c)].source: a for a, c in enumerate(self.by_article[self.starts])
        }
        return [number[s] for s in dict.fromkeys(sources) if s in number]

    def article_chunks(self, article: int) -> Indices:
        end = self.starts[article + 1] if article + 1 < len(self.starts) else len(self.by_article)
        return self.by_article[self.starts[article] : end]


def _load(index: VectorIndex) -> _Loaded:
    """Group the chunks by article (first appearance order) and index whole articles."""
    first: dict[str, int] = {}
    codes = np.array([first.setdefault(c.doc_id, len(first)) for c in index.chunks], np.intp)
    by_article = np.argsort(codes, kind="stable").astype(np.intp)
    starts = np.flatnonzero(np.r_[True, np.diff(codes[by_article]) != 0]).astype(np.intp)
    if not len(codes):
        starts = np.zeros(0, dtype=np.intp)
    texts = [index.chunks[i].text for i in by_article]  # each starts with title + headings
    bounds = [*starts.tolist(), len(texts)]
    articles = ["\n\n".join(texts[a:b]) for a, b in itertools.pairwise(bounds)]
    grouped = bool((np.diff(codes) >= 0).all())  # ingest writes an article's chunks together
    bm25 = BM25Index(articles)
    spelling = SpellingFixer(bm25.vocabulary, bm25.document_counts)
    return _Loaded(index, bm25, by_article, starts, grouped, spelling)


class HybridRetriever:
    """BM25 + dense (MiniLM) retrieval over the on-disk `VectorIndex`, ranked by article.

    Articles are ranked by `fuse_scores` (`fusion="score"`, weight `dense_weight`) or by
    RRF with `rrf_k` over each ranker's best `pool` (`fusion="rrf"`); `keep_tops` promotes
    each ranker's own best article (see `promote_tops`). Every ranked article gives its
    chunk closest in meaning before any gives a second, at most `max_per_doc` each (see
    `round_robin`); `mmr_lambda` re-ranks those candidates for diversity.
    `search_with_confidence` returns passages with the abstention model's confidence and
    leaves the decision to the caller (the turn abstains below `threshold`); with
    `abstain=True`, `search` itself returns nothing below it. Refit the model on your own
    help center with `switchboard kb eval --fit-abstention`. `mode` picks one ranking alone,
    for evaluation. A passage's `score` is its article's fused score (a z-score; higher is
    better), or its cosine or BM25 score in the single-ranking modes.
    """

    def __init__(
        self,
        index_dir: Path | str,
        embedder: Embedder,
        *,
        rrf_k: int = 60,
        pool: int = 50,
        mmr_lambda: float | None = None,
        max_per_doc: int | None = 2,
        abstention: Path | str | None = DEFAULT_PATH,
        abstain: bool = False,
        mode: Mode = "hybrid",
        reload_interval: float | None = 5.0,
        keep_tops: bool = False,
        fusion: Fusion = "score",
        dense_weight: float = DENSE_WEIGHT,
    ) -> None:
        self._index_dir = Path(index_dir)
        self._embedder = embedder
        self._rrf_k, self._pool, self._mode = rrf_k, pool, mode
        self._keep_tops, self._fusion, self._dense_weight = keep_tops, fusion, dense_weight
        self._mmr_lambda, self._max_per_doc = mmr_lambda, max_per_doc
        self._abstention_path = None if abstention is None else Path(abstention)
        self._abstention: AbstentionModel | None = None
        self._abstain = abstain
        self._loaded: _Loaded | None = None
        # A new index version (another process re-ingested) is picked up on search.
        self._watcher = VersionWatcher(index_dir, reload_interval)

    def warm_up(self) -> None:
        if self._loaded is None:
            self.reload()

    def reload(self) -> None:
        """Load the index again and rebuild BM25 (after a re-ingest); on failure the
        current index stays."""
        self._embedder.warm_up()
        if self._abstention_path is not None and self._abstention is None:
            self._abstention = AbstentionModel.load(self._abstention_path)
        index = VectorIndex.load(self._index_dir, embedder_name=self._embedder.name)
        # One assignment swaps index and BM25 together: searches see old or new, never a mix.
        self._loaded = _load(index)
        settle_garbage_collector()

    def ready(self) -> bool:
        return self._loaded is not None

    def fix_spelling(self, text: str) -> str:
        """`text` with its typos corrected against the help center's words ("pasword")."""
        loaded = self._loaded
        return text if loaded is None else loaded.spelling.fix(text)

    def vocabulary(self) -> frozenset[str]:
        """The knowledge base's words, lower case (empty until an index is loaded): the
        storage `scrub` stage keeps a capitalized word the help center itself uses."""
        loaded = self._loaded
        return loaded.bm25.vocabulary if loaded is not None else frozenset()

    @property
    def version(self) -> str | None:
        """The index version being served (None before `warm_up()`)."""
        loaded = self._loaded
        return None if loaded is None else loaded.index.version

    @property
    def threshold(self) -> float | None:
        """The confidence below which `search` abstains (None without an abstention model)."""
        return None if self._abstention is None else self._abstention.threshold

    async def search(self, query: str, k: int) -> list[Passage]:
        found = await self.retrieve(query, k)
        threshold = self.threshold
        abstain = self._abstain and threshold is not None and found.confidence < threshold
        return [] if abstain else found.passages

    async def search_with_confidence(
        self, query: str, k: int
    ) -> tuple[list[Passage], float | None]:
        """The top `k` passages and the probability (0-1) that the knowledge base answers
        (None without an abstention model)."""
        found = await self.retrieve(query, k)
        return found.passages, None if self._abstention is None else found.confidence

    async def relevance(self, query: str) -> float:
        """The probability (0-1) that the knowledge base answers `query`."""
        return (await self.retrieve(query, 1)).confidence

    async def retrieve(
        self, query: str, k: int, per_article: int | None = None, prefer: Sequence[str] = ()
    ) -> Retrieval:
        """Passages, abstention features and confidence in one pass. `per_article`: the
        best `k` articles with up to that many chunks each, in article order (for quoting),
        instead of the best `k` chunks."""
        loaded = self._loaded
        if loaded is None:
            raise RuntimeError("HybridRetriever.search() called before warm_up()")
        if not query.strip() or k <= 0 or not loaded.index.chunks:
            return Retrieval([], (0.0,) * len(FEATURES), 0.0)
        # Embedding, scoring (and the occasional reload) are CPU-bound: off the event loop.
        return await asyncio.to_thread(self._retrieve_sync, query, k, per_article, prefer)

    def _retrieve_sync(
        self, query: str, k: int, per_article: int | None = None, prefer: Sequence[str] = ()
    ) -> Retrieval:
        self._watcher.poll(self.version, self.reload)
        loaded = self._loaded
        assert loaded is not None  # set by warm_up(), never unset
        vector = self._embedder.embed([query_text(self._embedder, query)])[0]
        dense = loaded.index.embeddings @ vector
        # An article's dense score is its best chunk's (max + 0.1-0.25 × the second-best
        # measured the same on TechQA); reduceat over the grouped order is one numpy pass.
        article_dense = np.maximum.reduceat(loaded.by_article_order(dense), loaded.starts)
        article_bm25, terms = loaded.bm25.scores(query)
        fused = fuse_scores(article_dense, article_bm25, self._dense_weight)
        score = self._article_scores(article_dense, article_bm25, fused)
        ranked = _top(score, self._pool)
        if self._mode == "bm25":
            ranked = ranked[article_bm25[ranked] > 0]  # no shared term: not a keyword match
        order = [int(a) for a in ranked]
        if self._keep_tops and self._mode == "hybrid":
            tops = [int(np.argmax(article_dense))]
            tops += [int(np.argmax(article_bm25))] if article_bm25.max() > 0 else []
            order = promote_tops(order, tops)
        if per_article is None:
            chunks = self._select(loaded, order, score, dense, k)
        else:
            wanted = [a for a in loaded.articles_of(prefer) if a not in order[:k]]
            chunks = _sections(loaded, [*wanted, *order[:k]], dense, per_article)
        features = _features(article_dense, article_bm25, fused, terms)
        confidence = (
            float("nan") if self._abstention is None else self._abstention.probability(features)
        )
        passages = [_passage(loaded, i, float(score[a])) for i, a in chunks]
        return Retrieval(passages, features, confidence)

    async def search_articles(
        self, query: str, articles: int, per_article: int, prefer: Sequence[str] = ()
    ) -> tuple[list[Passage], float | None]:
        """Whole sections for quoting: the best `articles` articles, each with up to
        `per_article` of its chunks (the closest in meaning, shown in the article's own
        order), and the confidence as `search_with_confidence` gives it. `prefer`: sources
        of articles to include first whatever their rank (the ones the conversation is
        about: "does it expire?" names no topic of its own)."""
        found = await self.retrieve(query, articles, per_article=per_article, prefer=prefer)
        return found.passages, None if self._abstention is None else found.confidence

    def _article_scores(
        self, dense: npt.NDArray[np.float32], bm25: npt.NDArray[np.float32], fused: Scores
    ) -> Scores:
        if self._mode == "dense":
            return dense.astype(np.float64)
        if self._mode == "bm25":
            return bm25.astype(np.float64)
        if self._fusion == "score":
            return fused
        rankings = [_top(dense, self._pool).tolist()]
        bm25_rank = _top(bm25, self._pool)
        rankings.append(bm25_rank[bm25[bm25_rank] > 0].tolist())
        rrf = np.zeros(len(dense))
        for article, value in reciprocal_rank_fusion(rankings, self._rrf_k).items():
            rrf[article] = value
        return rrf

    def _select(
        self,
        loaded: _Loaded,
        order: list[int],
        score: Scores,
        dense: npt.NDArray[np.float32],
        k: int,
    ) -> list[tuple[int, int]]:
        """(chunk, article) pairs: `round_robin` over the ranked articles, each article's
        chunks closest in meaning first, then MMR if asked."""
        limit = k if self._mmr_lambda is None else k * 3
        groups = []
        for article in order[:limit]:
            chunks = loaded.article_chunks(article)
            groups.append(chunks[np.lexsort((chunks, -dense[chunks]))].tolist())
        picked = round_robin(groups, self._max_per_doc, limit)
        article_of = {c: a for a, g in zip(order, groups, strict=False) for c in g}
        if self._mmr_lambda is not None and picked:
            relevance = np.array([score[article_of[c]] for c in picked])
            relevance = relevance - relevance.min() + 1e-6  # MMR wants positive relevance
            vectors = loaded.index.embeddings[picked]
            picked = mmr(picked, relevance.tolist(), vectors, k, self._mmr_lambda)
        return [(c, article_of[c]) for c in picked[:k]]


def _sections(
    loaded: _Loaded, articles: Sequence[int], dense: npt.NDArray[np.float32], per_article: int
) -> list[tuple[int, int]]:
    """(chunk, article) pairs: each article's `per_article` chunks closest in meaning, in the
    order the article has them."""
    picked = []
    for article in articles:
        chunks = loaded.article_chunks(article)
        best = chunks[np.lexsort((chunks, -dense[chunks]))][:per_article]
        picked += [(int(c), article) for c in sorted(best.tolist())]
    return picked


def settle_garbage_collector() -> None:
    """Take the index's objects out of the cyclic garbage collector's sight.

    A loaded index is millions of long-lived objects (chunks, BM25's vocabulary); every
    collection the query path's allocations trigger walked them all. At 100k chunks that made
    the query embedding 4x slower (p50 26 -> 99 ms) until `gc.freeze()` moved them to the
    permanent generation. Reference counting still frees a replaced index. The server calls
    it again once every model is loaded (`Components.start`): with presidio, spaCy and the
    word lists outside it, a full collection during a turn took 270 ms.
    """
    gc.collect()
    gc.freeze()


def _top(scores: npt.NDArray[np.floating], n: int) -> Indices:
    """Indices of the `n` highest scores, best first (ties by index); O(len) selection."""
    n = min(n, len(scores))
    top = np.argpartition(-scores, n - 1)[:n]
    return top[np.lexsort((top, -scores[top]))]


def _margin(scores: npt.NDArray[np.floating]) -> float:
    """The best score minus the second best (0 with fewer than two)."""
    if len(scores) < 2:
        return 0.0
    best, second = -np.partition(-np.asarray(scores, dtype=np.float64), 1)[:2]
    return float(best - second)


def _features(
    dense: npt.NDArray[np.float32],
    bm25: npt.NDArray[np.float32],
    fused: Scores,
    terms: int,
) -> tuple[float, ...]:
    """The abstention signals over articles, in the order of `knowledge.abstain.FEATURES`."""
    return (
        float(dense.max()),
        _margin(dense),
        _margin(bm25) / max(terms, 1),
        _margin(fused),
    )


def _passage(loaded: _Loaded, i: int, score: float) -> Passage:
    chunk = loaded.index.chunks[i]
    return Passage(
        text=chunk.text,
        citation=Citation(title=chunk.title, source=chunk.source),
        score=score,
        chunk_id=chunk.id,
        heading=chunk.heading,
    )
