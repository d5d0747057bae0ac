"""What the people who love a film think of other films: MovieLens co-ratings.

The probes of :mod:`interplay.evaluation.probes` that come from this index ask whether a user
simulator accepts what a film's fans also love and refuses what they dislike. The rule is the
ratings of real people, disjoint from the attribute rule that chose the training negatives
(:func:`interplay.training.counterfactual.contradicts`, "shares no attribute") and from the match
counts a grounded prompt can carry; and an item that rule would have chosen is never a probe item.

For a target film t:
- its fans are the users who rated t >= :data:`FAN_RATING` (at least :data:`MIN_FANS` of them);
- each other film rated by at least :data:`MIN_SUPPORT` fans gets its fans' liked share: the share
  of those ratings >= :data:`FAN_RATING`;
- ``co-liked``: the films whose liked share is >= :data:`LIKED_SHARE`; ``co-disliked``: those whose
  liked share is <= :data:`DISLIKED_SHARE` (most liked, or least liked, first).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

FAN_RATING = 4.0
MIN_FANS = 5
MIN_SUPPORT = 3
LIKED_SHARE = 0.8
DISLIKED_SHARE = 1 / 3


class CoRatings:
    """MovieLens ratings indexed by film (``ml:<movieId>`` ids, as the catalogue's)."""

    def __init__(self, ratings: dict[str, dict[str, float]]):
        #: item id -> user -> rating
        self.by_item = ratings
        self.by_user: dict[str, dict[str, float]] = defaultdict(dict)
        for item, users in ratings.items():
            for user, r in users.items():
                self.by_user[user][item] = r

    @classmethod
    def from_movielens(cls, data_root: str | Path) -> "CoRatings":
        """The ratings of ``movielens-small/ratings.csv`` (errors name file, line and field)."""
        from interplay.data.errors import DataFormatError
        from interplay.data.movielens import ML_SMALL, _rows

        path = Path(data_root) / ML_SMALL / "ratings.csv"
        by_item: dict[str, dict[str, float]] = defaultdict(dict)
        for lineno, row in _rows(path, ("userId", "movieId", "rating", "timestamp")):
            try:
                rating = float(row["rating"])
            except ValueError:
                raise DataFormatError(path, lineno, "rating", f"not a number: {row['rating']!r}") from None
            by_item[f"ml:{row['movieId'].strip()}"][row["userId"].strip()] = rating
        return cls(dict(by_item))

    def fans(self, item_id: str) -> list[str]:
        """The users who rated the film >= :data:`FAN_RATING`, sorted."""
        return sorted(u for u, r in self.by_item.get(item_id, {}).items() if r >= FAN_RATING)

    def liked_shares(self, item_id: str) -> dict[str, float]:
        """Each other film rated by >= :data:`MIN_SUPPORT` of the film's fans -> its fans' liked
        share; empty when the film has fewer than :data:`MIN_FANS` fans."""
        fans = self.fans(item_id)
        if len(fans) < MIN_FANS:
            return {}
        liked: dict[str, int] = defaultdict(int)
        rated: dict[str, int] = defaultdict(int)
        for user in fans:
            for other, r in self.by_user[user].items():
                if other != item_id:
                    rated[other] += 1
                    liked[other] += r >= FAN_RATING
        return {i: liked[i] / n for i, n in rated.items() if n >= MIN_SUPPORT}

    def co_liked(self, item_id: str) -> list[str]:
        """Films the fans love (liked share >= :data:`LIKED_SHARE`), most liked first (ties by id)."""
        shares = self.liked_shares(item_id)
        return sorted((i for i, s in shares.items() if s >= LIKED_SHARE), key=lambda i: (-shares[i], i))

    def co_disliked(self, item_id: str) -> list[str]:
        """Films the fans dislike (liked share <= :data:`DISLIKED_SHARE`), least liked first."""
        shares = self.liked_shares(item_id)
        return sorted((i for i, s in shares.items() if s <= DISLIKED_SHARE), key=lambda i: (shares[i], i))
