r"""dataset_audit: ``python -m dataset_audit EMB... --out DIR`` — how poisoned is a training set, and how close to
implosion?

A product of its own, for a data-set curator: it reads the embeddings of a training set (``python -m
empirical.embed`` makes them from an image-text folder) and stands on the rest of the toolkit — AD from
:mod:`theory.ad`, the margin from the simulator (:mod:`simulate.predict`). ``python -m simulate.audit`` still runs it
for one release. Modules, one idea each: :mod:`~dataset_audit.config`, :mod:`~dataset_audit.pipeline` (the steps),
:mod:`~dataset_audit.passes` and :mod:`~dataset_audit.execution` (the pass over data larger than memory, and where it
runs), :mod:`~dataset_audit.flags`, :mod:`~dataset_audit.concept_view`, :mod:`~dataset_audit.estimates`,
:mod:`~dataset_audit.margin`, :mod:`~dataset_audit.validation`, :mod:`~dataset_audit.report`,
:mod:`~dataset_audit.command`.

**Input.** One or many embedding shards in the layouts data sets come in (:mod:`implosion_base.layouts`, read
by :func:`implosion_base.shards.open_shards` with no conversion step): clip-retrieval's ``img_emb/`` ``text_emb/``
``metadata/`` siblings (float16 ``.npy``, parquet metadata whose every column reaches ``pairs.csv``), DataComp's
``NAME.npz`` features (``--features l14|b32``) beside ``NAME.parquet``, paired ``text_emb_N.npy`` /
``img_emb_N.npy`` in one folder (``metadata_N.csv`` or ``.parquet`` beside), or ``.npz`` / ``.safetensors`` pairs
files; shards in the number order of their names. ``--metadata CSV`` gives one side CSV for all pairs in order
(:func:`implosion_base.pairs_file.load_side_metadata`: ``file_name``/``url`` and ``caption``/``text`` columns). Shards
are read block by block: memory stays within ``--memory`` whatever n.

**AD.** Exact (:func:`theory.ad.pair_attribution_streamed`, block pair by block pair) when the n² pair terms are
affordable (n ≤ ``--exact-max``); otherwise D_fea exact over every pair and D_stru from every pair against
``--partners`` random partners, with its 95% interval (:func:`theory.ad.structure_sampled`, one pass). The report
says which and why. The sampled pass is cut into blocks of rows (:mod:`dataset_audit.passes`) that run here, in
``--workers`` local processes or on a Dask cluster (``--dask ADDRESS``) with the same numbers everywhere; each
finished block is recorded in ``DIR/blocks/`` so that a killed audit, run again with the same arguments, resumes
(the folder is removed once the report is written).

**Pair suspicion.** Each pair's share of AD, c_i = α(1 − s_i)/n + (1 − α) r_i/n², with r_i its structure row
sum (exact, or estimated from ``--partners`` random partners), reported as the score n·c_i and its rank. The
flagging rule, stated: a dirty-label pair's caption and image show different concepts, so its text–image cosine
comes from another population than the matched pairs'. A two-component Gaussian mixture is fitted (EM) to the pair
cosines cos(t_i, v_i) and compared with one Gaussian by BIC; when two components win, a pair is flagged when its
posterior probability of belonging to the low-cosine component exceeds 0.5 (else nothing is flagged: the cosines
look like one population; Ashman's D > 2 is also required, so a skewed single population is not split). A global
outlier cut on the score would not do: in a CLIP-like space the matched pairs'
cosines are themselves spread so widely that no single dirty-label pair is an outlier (measured in the tests),
while the two populations still separate. The Iglewicz–Hoaglin modified z-score of the score is reported beside.

**Concepts.** With ``--concepts-file`` (names, one per line) each pair's concept is the name its caption contains
(:mod:`implosion_base.captions`); otherwise the unit text embeddings are clustered by k-means (k-means++ start, Lloyd
iterations, seeded) — captions of one concept embed close together — with K given (``--n-concepts``) or chosen
as the K in 2..``--max-concepts`` with the best mean silhouette on a sample (said in the report). A concept counts
as poisoned when its number of flagged pairs is improbably high for the background flag rate q (the mixture's
expected false-flag rate among matched pairs, so it holds however many concepts are poisoned): one-sided binomial
P(X ≥ f_c | n_c, q) < 0.01/K (Bonferroni).
Hence the estimates Ĉ_P (poisoned concepts), p̂ (median flagged pairs per poisoned concept) and m̂ (median
unflagged pairs per concept).

**Margin.** :func:`simulate.predict.predict` at K, m̂, p̂, Ĉ_P with the concept geometry measured on these
embeddings (:mod:`simulate.calibrate`) and the capacity ``--dim`` (or ``--clean-acc``): the predicted unpoisoned
accuracy now, and the predicted threshold C_P (accuracy < 0.5) at this poison rate, hence how many more concepts
poisoned like these the model would stand — with the spread over simulator seeds, and a plain warning that this
is a model's prediction, not a measurement.

**Output.** ``DIR/report.html`` (self-contained, the verdict first) and ``DIR/report.md`` (the same document:
:mod:`dataset_audit.document`), ``DIR/pairs.csv`` and ``DIR/pairs.parquet`` (index, shard, the data set's metadata
columns, cos, s_i, score = n·c_i, z, rank, the mixture's p_mismatched, flagged, concept), ``DIR/concepts.csv``,
``DIR/report.json`` and ``DIR/scores.png``.
"""

from dataset_audit.command import cli, main  # the console script's target (``implosion-audit``)
from implosion_base.lazy import lazy_exports

_EXPORTS = {
    "AuditConfig": "dataset_audit.config",
    "Execution": "dataset_audit.execution",
    "audit": "dataset_audit.pipeline",
    "validate": "dataset_audit.validation",
    "validate_mixes": "dataset_audit.validation",
    "write_report": "dataset_audit.report",
}

_names, __getattr__, __dir__ = lazy_exports("dataset_audit", _EXPORTS)
__all__ = [*_names, "cli", "main"]
