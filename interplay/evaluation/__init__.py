"""Evaluation of user and recommender agents the way the paper does (Tables 1 and 2), plus the
real-human view: tasks built from dialogue records, run on Ray, scored from the logs they write."""

from interplay.evaluation import user_parts as _built_in_parts  # noqa: E402,F401  (registers the built-in evaluation parts)
