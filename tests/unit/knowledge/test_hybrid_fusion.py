"""Rank fusion, diversity and the BM25 index, on small hand-checked fixtures."""

from __future__ import annotations

import numpy as np
import pytest

from knowledge.bm25 import BM25Index, tokenize
from knowledge.hybrid import (
    fuse_scores,
    mmr,
    promote_tops,
    reciprocal_rank_fusion,
    round_robin,
    zscore,
)


def test_items_ranked_well_by_both_lists_win_when_fusing_with_rrf() -> None:
    fused = reciprocal_rank_fusion([[1, 2, 3], [2, 3, 1]], k=60)
    assert fused[2] == pytest.approx(1 / 62 + 1 / 61)
    assert sorted(fused, key=lambda i: -fused[i]) == [2, 1, 3]


def test_an_item_in_one_list_only_scores_its_single_term_when_fusing_with_rrf() -> None:
    fused = reciprocal_rank_fusion([[7], [8, 9]], k=1)
    assert fused == {7: 0.5, 8: 0.5, 9: pytest.approx(1 / 3)}


def test_no_rankings_fuse_to_nothing_when_fusing_with_rrf() -> None:
    assert reciprocal_rank_fusion([]) == {}


def test_a_near_duplicate_is_pushed_down_when_mmr_diversifies() -> None:
    # Items 0 and 1 are the same direction; item 2 is orthogonal but slightly less relevant.
    vectors = np.array([[1, 0], [1, 0], [0, 1]], dtype=np.float32)
    assert mmr([10, 11, 12], [1.0, 0.99, 0.9], vectors, k=3, lambda_=0.5) == [10, 12, 11]


def test_relevance_order_is_kept_when_mmr_lambda_is_one() -> None:
    vectors = np.array([[1, 0], [1, 0], [0, 1]], dtype=np.float32)
    assert mmr([10, 11, 12], [1.0, 0.99, 0.9], vectors, k=2, lambda_=1.0) == [10, 11]
    assert mmr([], [], np.zeros((0, 2), dtype=np.float32), k=3, lambda_=0.5) == []


@pytest.mark.parametrize(
    ("cap", "limit", "expected"),
    [
        (1, 5, [1, 4, 7]),  # one per group, in group order
        (2, 5, [1, 4, 7, 2, 5]),  # every group's first before any group's second
        (2, 2, [1, 4]),
        (None, 9, [1, 4, 7, 2, 5, 3]),  # no cap: until the groups run out
    ],
)
def test_every_group_gives_its_first_before_any_gives_a_second_when_taking_round_robin(
    cap: int | None, limit: int, expected: list[int]
) -> None:
    assert round_robin([[1, 2, 3], [4, 5], [7]], cap, limit) == expected
    assert round_robin([], cap, limit) == []


def test_scores_are_centred_in_units_of_their_spread_when_z_scored() -> None:
    assert zscore([1.0, 2.0, 3.0]) == pytest.approx([-1.2247, 0.0, 1.2247], abs=1e-4)
    assert zscore([4.0, 4.0]).tolist() == [0.0, 0.0]  # flat: no signal, no division by 0
    assert zscore([]).shape == (0,)
    assert zscore([1.0, 2.0, 3.0], floor=10.0) == pytest.approx([-0.1, 0.0, 0.1])


def test_the_one_article_with_a_rare_word_wins_when_all_cosines_are_noise() -> None:
    # A one-word query: cosines all near 0.15 (spread 0.05), only article 3 has the word.
    dense = [0.22, 0.21, 0.20, 0.12, 0.18, 0.10, 0.15, 0.14, 0.13, 0.16, 0.11, 0.17]
    bm25 = [0.0, 0.0, 0.0, 0.84] + [0.0] * 8
    assert int(np.argmax(fuse_scores(dense, bm25, 0.7))) == 3


def test_a_large_bm25_margin_outweighs_a_small_cosine_one_when_fusing_scores() -> None:
    # Article 1 is barely behind on cosine but far ahead on keywords; a flat BM25 (no query
    # term in the corpus) leaves the dense order alone.
    dense = [0.62, 0.60, 0.20, 0.21]
    assert int(np.argmax(fuse_scores(dense, [1.0, 9.0, 0.5, 0.0], 0.7))) == 1
    assert fuse_scores(dense, [0.0] * 4, 0.7).argsort().tolist() == [2, 3, 1, 0]


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("How do I reset my Password?", ["reset", "password"]),
        ("Change the e-mail", ["change", "mail"]),
        ("SQLCODE401 in DB2 v11", ["sqlcode401", "db2", "v11"]),
        ("a I 7 of", []),
    ],
)
def test_words_are_lowercased_without_stopwords_when_tokenizing(
    text: str, tokens: list[str]
) -> None:
    assert tokenize(text) == tokens


def test_the_chunk_sharing_a_rare_term_scores_highest_when_scoring_bm25() -> None:
    index = BM25Index(["refund to your card", "parcel track page", "refund policy and card"])
    scores, terms = index.scores("how do I track my parcel")
    assert terms == 2
    assert int(np.argmax(scores)) == 1
    assert scores[0] == 0.0


def test_scores_are_zero_when_no_query_term_is_in_the_corpus() -> None:
    index = BM25Index(["refund to your card", ""])
    scores, terms = index.scores("zebra the")
    assert terms == 1
    assert scores.tolist() == [0.0, 0.0]
    assert BM25Index([]).scores("refund")[0].shape == (0,)


@pytest.mark.parametrize(
    ("fused", "tops", "expected"),
    [
        ([5, 1, 2, 3, 4], [4, 3], [5, 4, 3, 1, 2]),  # buried tops come right after the best
        ([5, 1, 2], [5, 1], [5, 1, 2]),  # already on top: nothing moves
        ([5, 1, 2], [2, 2], [5, 2, 1]),  # both rankers agree: promoted once
        ([5, 1, 2], [], [5, 1, 2]),
    ],
)
def test_each_rankers_best_follows_the_fused_best_when_promoted(
    fused: list[int], tops: list[int], expected: list[int]
) -> None:
    assert promote_tops(fused, tops) == expected
