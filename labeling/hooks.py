"""Extension points other apps fill in, so labeling never imports them.

SAMPLE_EXTRAS: functions fn(sample) -> dict of extra template context for the sample page
(e.g. similar images from the training app).
"""

SAMPLE_EXTRAS: list = []


def sample_extras(*, sample) -> dict:
    context: dict = {}
    for fn in SAMPLE_EXTRAS:
        context.update(fn(sample))
    return context


# SUGGESTERS: fn(project, samples) -> {sample_id: {"label": str, "confidence": float}} from the
# current model (the training app registers one); the labeling page pre-selects the suggestion.
SUGGESTERS: list = []


def suggestions_for(*, project, samples) -> dict:
    out: dict = {}
    for fn in SUGGESTERS:
        out.update(fn(project, samples))
    return out


# PREDICTORS: fn(sample) -> the deployed model's result object for the sample, or None.
PREDICTORS: list = []


def prediction_for(*, sample):
    for fn in PREDICTORS:
        result = fn(sample)
        if result is not None:
            return result
    return None


# QUEUE_REFRESHERS: fn(project, want) recomputes the active learner's batch now (the training app
# registers one). The queue calls it at claim time when the stored batch is older than the latest
# label or used up, so a labeler is never served an order that ignores the labels just given.
QUEUE_REFRESHERS: list = []


def queue_refresh_now(*, project, want: int) -> bool:
    for fn in QUEUE_REFRESHERS:
        fn(project, want)
    return bool(QUEUE_REFRESHERS)


# LABEL_NOTES: fn(project, names) -> {name: {"imagenet": {...} | None}} about each label name (the
# training app registers the names' ImageNet mapping for the zero-shot model); the labels page and
# GET .../labels show them.
LABEL_NOTES: list = []


def label_notes(*, project, names: list[str]) -> dict:
    out: dict = {n: {"imagenet": None} for n in names}
    for fn in LABEL_NOTES:
        for name, notes in fn(project, names).items():
            out.setdefault(name, {}).update(notes)
    return out
