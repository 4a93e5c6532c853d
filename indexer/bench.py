"""``vigil bench index``: build time, memory, latency and recall of each index type.

The gallery is synthetic but shaped like real face embeddings: identities are points in
a cone (different people have cosine similarity ≈ 0.7 around a common mean, as dlib
embeddings do), each with ``templates_per_identity`` noisy templates (same person ≈ 0.9).
Queries are fresh noisy samples of random identities. *Hit rate* is how often an index's
top identity equals exact search's top identity; single-query latency is measured one
query at a time (p50/p99), throughput with batches of ``batch_size`` queries.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass

import faiss
import numpy as np
from tqdm import tqdm

from indexer.search import TemplateIndex, normalise
from vigil.typing import Embeddings

# Spread of identity centres around the common mean, and of templates around their centre,
# chosen so that cosine(different people) ≈ 0.7 and cosine(same person) ≈ 0.9 at 128-d.
_CENTRE_SPREAD = 0.65
_TEMPLATE_SPREAD = 0.3


@dataclass(frozen=True)
class IndexBenchRow:
    index_type: str
    templates: int
    dim: int
    build_s: float
    memory_mb: float
    single_query_p50_ms: float
    single_query_p99_ms: float
    batched_queries_per_s: float
    hit_rate_vs_exact: float
    identity_accuracy: float


def synthetic_gallery(
    size: int, dim: int, templates_per_identity: int, seed: int = 0
) -> tuple[Embeddings, np.ndarray, Embeddings, np.ndarray]:
    """``(templates, identity_of_template, queries_base_centres, ...)``: see module docstring."""
    rng = np.random.default_rng(seed)
    identities = max(1, size // templates_per_identity)
    mean = normalise(rng.normal(size=(1, dim)).astype(np.float32))
    centres = normalise(
        mean + _CENTRE_SPREAD * normalise(rng.normal(size=(identities, dim)).astype(np.float32))
    )
    owner = np.arange(size) % identities
    templates = np.empty((size, dim), np.float32)
    for start in range(0, size, 100_000):  # chunks keep peak memory at one copy of the gallery
        rows = owner[start : start + 100_000]
        noise = normalise(rng.normal(size=(len(rows), dim)).astype(np.float32))
        templates[start : start + len(rows)] = normalise(centres[rows] + _TEMPLATE_SPREAD * noise)
    return templates, owner, centres, rng.integers(0, identities, size=1)


def make_queries(centres: Embeddings, count: int, seed: int = 1) -> tuple[Embeddings, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, len(centres), size=count)
    noise = normalise(rng.normal(size=(count, centres.shape[1])).astype(np.float32))
    return normalise(centres[truth] + _TEMPLATE_SPREAD * noise), truth


def run_index_bench(
    size: int,
    dim: int,
    kinds: tuple[str, ...] = ("flat", "ivf"),
    queries: int = 1000,
    templates_per_identity: int = 5,
    batch_size: int = 256,
    probes: int = 32,
) -> list[IndexBenchRow]:
    """Build each index kind over one synthetic gallery and measure it."""
    templates, owner, centres, _ = synthetic_gallery(size, dim, templates_per_identity)
    query_vectors, truth = make_queries(centres, queries)
    names = [str(i) for i in owner]
    ids = np.arange(size, dtype=np.int64)
    exact_top: list[str] | None = None
    rows = []
    for kind in kinds:
        index = TemplateIndex(dim, kind="ivf" if kind == "ivf" else "flat", probes=probes)
        started = time.perf_counter()
        index.build(ids, names, templates)
        build_s = time.perf_counter() - started
        latencies = []
        top: list[str] = []
        for query in tqdm(query_vectors, desc=f"{kind} single queries", unit="q", leave=False):
            started = time.perf_counter()
            [matches] = index.search(query[None], k=1)
            latencies.append(time.perf_counter() - started)
            top.append(matches[0].identity_id if matches else "")
        started = time.perf_counter()
        for start in range(0, queries, batch_size):
            index.search(query_vectors[start : start + batch_size], k=1)
        batched = queries / (time.perf_counter() - started)
        if exact_top is None:
            exact_top = top  # the first kind is the exact baseline
        latencies_ms = sorted(1000 * s for s in latencies)
        rows.append(
            IndexBenchRow(
                index_type=index.index_type,
                templates=size,
                dim=dim,
                build_s=round(build_s, 2),
                memory_mb=round(_memory_mb(index), 1),
                single_query_p50_ms=round(statistics.median(latencies_ms), 3),
                single_query_p99_ms=round(latencies_ms[int(0.99 * (len(latencies_ms) - 1))], 3),
                batched_queries_per_s=round(batched, 1),
                hit_rate_vs_exact=float(np.mean([a == b for a, b in zip(top, exact_top, strict=True)])),
                identity_accuracy=float(np.mean([a == str(t) for a, t in zip(top, truth, strict=True)])),
            )
        )
    return rows


def _memory_mb(index: TemplateIndex) -> float:
    """Size of the serialised FAISS index (vectors + lists + id map)."""
    return len(faiss.serialize_index(index._index)) / 2**20


def to_dict(rows: list[IndexBenchRow]) -> dict[str, object]:
    return {"threads": faiss.omp_get_max_threads(), "rows": [asdict(row) for row in rows]}


def to_markdown(rows: list[IndexBenchRow]) -> str:
    lines = [
        "| index | templates × dim | build s | memory MB | p50 ms | p99 ms | batched q/s "
        "| hit rate vs exact | identity acc. |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {r.index_type} | {r.templates:,} × {r.dim} | {r.build_s} | {r.memory_mb} "
        f"| {r.single_query_p50_ms} | {r.single_query_p99_ms} | {r.batched_queries_per_s:,.0f} "
        f"| {r.hit_rate_vs_exact:.2%} | "
        f"{r.identity_accuracy:.2%} |"
        for r in rows
    ]
    return "\n".join(lines) + "\n"
