"""``idsuite.evaluate``: the battery on a model from Python (a notebook, a training script), through
the same runner, store and summaries as ``idsuite run``.

A model is an in-memory ``transformers`` model with its tokenizer, or zoo entry ids and tags. With a
``store`` the cells are written and reused exactly as the command line writes them (an in-memory
model's fingerprint is a hash of its state dict, config and tokenizer: the same checkpoint reuses
its cells, a changed weight makes new ones); without one they are computed in a temporary store
that is read into the result and removed.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Callable, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pydantic

from idsuite.results.headlines import headlines, layer_rows
from idsuite.results.query import ResultQuery
from idsuite.results.store import ResultStore
from idsuite.runners.jobs import ModelOutcome, Runner
from idsuite.runners.models.in_memory import in_memory_entry
from idsuite.runners.models.zoo import DEFAULT_ZOO, EntryFields, Zoo, load_zoo
from idsuite.runners.probing.corpus import Corpus, CorpusSpec, load_corpus
from idsuite.runners.run_config import RunConfig
from idsuite.suite.registry import RegistryError

Texts = Sequence[str] | Sequence[tuple[str, str | None]]


@dataclass(frozen=True)
class Evaluation:
    """What ``evaluate`` computed: one ``ModelOutcome`` per model (each init seed of a control), and
    the rows of their cells in the store's long format (``docs/results.md``).

    ``rows``: every row (per sequence, head, map cell and the aggregates); ``summary``: the rows
    aggregated over sequences (per layer, per head, whole model), each with ``n`` and its 95%
    bootstrap interval; ``headlines``: one number per model and metric with its interval and sample;
    ``per_layer``: the per-layer aggregates; ``failures``: model label -> metric -> one line of cause.
    """

    outcomes: list[ModelOutcome]
    rows: pd.DataFrame
    summary: pd.DataFrame
    store: Path | None

    @property
    def headlines(self) -> pd.DataFrame:
        return headlines(self.summary) if len(self.summary) else self.summary

    @property
    def per_layer(self) -> pd.DataFrame:
        return layer_rows(self.summary) if len(self.summary) else self.summary

    @property
    def failures(self) -> dict[str, dict[str, str]]:
        return {o.label: dict(o.failed) for o in self.outcomes if o.failed}

    def __repr__(self) -> str:
        models = ", ".join(o.label for o in self.outcomes)
        return (f"Evaluation({models}: {len(self.summary)} aggregated rows of {len(self.rows)}, "
                f"{sum(len(o.failed) for o in self.outcomes)} failed metric(s), store {self.store or 'temporary'})")


def _split_settings(settings: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``settings`` as (``RunConfig`` fields, ``CorpusSpec`` fields); an unknown name is a TypeError."""
    run_fields, corpus_fields = set(RunConfig.model_fields) - {"metrics"}, set(CorpusSpec.model_fields) - {"source", "seed"}
    unknown = sorted(set(settings) - run_fields - corpus_fields)
    if unknown:
        raise TypeError(f"evaluate() got unknown setting(s) {', '.join(unknown)}; settings are "
                        f"{', '.join(sorted(run_fields | corpus_fields))}")
    return ({k: v for k, v in settings.items() if k in run_fields},
            {k: v for k, v in settings.items() if k in corpus_fields})


def _corpus(corpus: str | CorpusSpec | Corpus | Texts, seed: int, corpus_settings: dict[str, Any]) -> Corpus:
    """A corpus from its source name (``--corpus``), a spec, a loaded corpus, or a list of texts (or
    ``(text, pair)`` tuples) used as they are, in their order."""
    if isinstance(corpus, Corpus):
        return corpus
    if isinstance(corpus, str):
        corpus = CorpusSpec(source=corpus, seed=seed, **corpus_settings)
    if isinstance(corpus, CorpusSpec):
        return load_corpus(corpus)
    items = [(item, None) if isinstance(item, str) else (item[0], item[1]) for item in corpus]
    if len(items) < 2 or not all(isinstance(t, str) and t.strip() for t, _ in items):
        raise ValueError("corpus: give at least two non-empty texts")
    probe = Corpus(corpus_id="texts", items=items)
    return Corpus(corpus_id=f"texts:{probe.content_hash[:8]}", items=items)


@contextmanager
def _borrowed(model: Any, tokenizer: Any):
    """Lend a caller's model to the runner and give it back as it was: training mode, each
    parameter's ``requires_grad``, the attention implementation and the tokenizer's pad token."""
    training, attention = model.training, model.config._attn_implementation
    grads = [(p, p.requires_grad) for p in model.parameters()]
    pad = tokenizer.pad_token
    model.eval().requires_grad_(False)
    try:
        yield
    finally:
        if attention is not None:
            model.set_attn_implementation(attention)
        model.train(training)
        for parameter, flag in grads:
            parameter.requires_grad_(flag)
        if tokenizer.pad_token != pad:
            tokenizer.pad_token = pad


def _in_memory(model: Any, tokenizer: Any, model_id: str | None, run: dict[str, Any]) -> tuple[Zoo, list[str]]:
    """A one-entry zoo for an in-memory model, run where it is and as it is (its device and dtype)."""
    if tokenizer is None:
        import transformers

        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(model.name_or_path)
        except (OSError, ValueError) as e:
            raise ValueError(f"tokenizer: none given and none found for {model.name_or_path!r} ({str(e).splitlines()[0]})") from None
    entry_id = model_id or (Path(model.name_or_path).name if model.name_or_path else type(model).__name__)
    try:
        entry = in_memory_entry(model, tokenizer, entry_id)
    except pydantic.ValidationError as e:  # a dtype the suite does not run (float64, int8, ...)
        error = e.errors()[0]
        raise ValueError(f"model: {'.'.join(map(str, error['loc']))}: {error['msg']} (cast the model first)") from None
    device = str(next(model.parameters()).device)
    for name, value in (("device", device), ("dtype", entry.dtype)):
        given = run.setdefault(name, value)
        if given not in (value, "auto") and not (name == "device" and device.startswith(str(given))):
            raise ValueError(f"{name}: an in-memory model runs where and as it is ({value}); move or cast it first")
    run["device"], run["dtype"] = device, entry.dtype
    return Zoo(path=Path("<memory>"), entries={entry_id: entry}), [entry_id]


def evaluate(model: Any, tokenizer: Any = None, corpus: str | CorpusSpec | Corpus | Texts = "lee",
             metrics: Sequence[str] | None = None, store: str | Path | None = None, *, zoo: str | Path = DEFAULT_ZOO,
             model_id: str | None = None, log: Callable[[str], None] | None = print, **settings: Any) -> Evaluation:
    """Run the battery (or the ``metrics`` named) on ``model`` and return its ``Evaluation``.

    ``model``: an in-memory ``transformers`` model (with ``tokenizer``, else the one saved beside it;
    its id in the results is ``model_id``, else its folder's name) or zoo entry ids and tags (a
    string or a list; ``zoo``: the zoo file, default the shipped one). ``corpus``: ``"lee"`` (the
    packaged default), ``"mrpc"``, a hub dataset id, a local file, a ``CorpusSpec`` or a list of
    texts. ``store``: a result folder to write and reuse cells in (as ``idsuite run --results``);
    ``None`` computes in a temporary one. ``settings``: any field of ``RunConfig`` (``max_tokens``,
    ``batch_size``, ``seed``, ``metric_settings={"context_mixing": {...}}``, ``recompute``, ...) or of
    ``CorpusSpec`` (``max_sequences``, ``text_column``, ...). A failing metric is recorded in the
    result's ``failures``, as in a run; bad settings raise ``ValueError`` / ``TypeError`` at once.
    """
    run, corpus_settings = _split_settings(settings)
    with ExitStack() as stack:
        if isinstance(model, str | EntryFields) or (isinstance(model, Sequence) and all(isinstance(m, str) for m in model)):
            models = [model] if isinstance(model, str) else list(model)
            the_zoo = load_zoo(zoo)
            ids, unknown = the_zoo.select(models)
            if unknown:
                raise ValueError(f"model: {zoo}: no entry or tag named {', '.join(map(repr, unknown))}")
        else:
            the_zoo, ids = _in_memory(model, tokenizer, model_id, run)
            stack.enter_context(_borrowed(model, the_zoo.entries[ids[0]].tokenizer))
        try:
            config = RunConfig(metrics=tuple(metrics) if metrics is not None else None, **run)
            config.metric_configs()
        except pydantic.ValidationError as e:
            error = e.errors()[0]
            raise ValueError(f"{'.'.join(map(str, error['loc'])) or 'settings'}: {error['msg']}") from None
        except RegistryError as e:
            raise ValueError(str(e)) from None
        texts = _corpus(corpus, config.seed, corpus_settings)
        root = Path(store) if store is not None else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="idsuite-")))
        runner = Runner(the_zoo, texts, config, ResultStore(root), uuid.uuid4().hex[:12], log=log or (lambda _: None))
        outcomes = runner.run(ids)
        query = ResultQuery(root)
        cells = [ref for o in outcomes for ref in o.refs()]
        try:
            return Evaluation(outcomes, query.cell_rows(cells), query.summary_rows(cells), Path(store) if store is not None else None)
        finally:
            query.close()


def open_results(path: str | Path = "idsuite-results") -> ResultQuery:
    """A store for querying: ``cells()`` (one row per cell), ``summary_rows``, ``cell_rows``,
    ``all_rows`` (``docs/results.md``). Call ``close()`` when done."""
    return ResultQuery(path)
