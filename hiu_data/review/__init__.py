"""The FiftyOne review loop: push pseudo-labels, launch the App, pull what a person decided.

- :func:`hiu_data.review.push.push` — a converted dataset -> a persistent FiftyOne dataset;
- :func:`hiu_data.review.app.launch` — the App on 127.0.0.1, and the reviewer's instructions;
- :func:`hiu_data.review.pull.pull` — tags and edits -> a reviewed converted dataset;
- :mod:`hiu_data.review.labels` — label conversions and the decision rules (no FiftyOne).

FiftyOne is imported only inside those functions, so importing these modules stays cheap and
the rest of hiu works without FiftyOne.
"""
