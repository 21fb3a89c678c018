"""MinHash near-duplicate detection: fuxitranyu's sharded, vectorised dedup against datasketch, in the same run.

The corpus is real multilingual text: documents are random runs of this machine's gettext translations (22
languages, zh/ja/th/km/my among them), and a tenth of them are planted near-copies of an earlier document with
0.2-6% of their words (characters in unspaced scripts) replaced. Both methods see the same documents from a JSONL
file, with the same shingles (our tokens, 5-grams), 112 permutations and 16 bands × 7 rows:

- fuxitranyu: `deduplicate` end to end (reading, normalising, shingling, MinHash, sharded LSH buckets, union-find).
- datasketch: `MinHash(num_perm=112).update_batch(shingles)`, then `MinHashLSH(params=(16, 7))`: a document whose
  query finds an earlier one is removed, otherwise inserted. Its time counts only MinHash + LSH; our shingling of
  its input is timed apart, so the comparison is conservative.

Each method runs in a fresh process that reports its peak RSS. Recall is over planted pairs (found = both in one
cluster), overall and for pairs whose true Jaccard similarity of shingle sets is >= 0.8; precision is the share
of removals whose kept document is the planted partner (or has true Jaccard >= 0.5 with it).

    python benchmarks/bench_dedup.py [--sizes 50000 100000]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import random
import resource
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

LANGUAGES = ("fr", "de", "es", "ru", "uk", "ar", "hi", "bn", "ta", "el", "he", "ko", "vi", "tr", "pl", "id", "fa",
             "zh", "ja", "th", "km", "my")
UNSPACED = {"zh", "ja", "th", "km", "my"}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_pools(locale_dir: str) -> dict[str, list[str]]:
    """Distinct cleaned translations per language, from every readable catalog."""
    from fuxitranyu.data import system
    from fuxitranyu.errors import FuxiError

    pools: dict[str, set[str]] = {}
    for catalog in system.list_catalogs(locale_dir):
        try:
            if catalog.language in LANGUAGES:
                pools.setdefault(catalog.language, set()).update(system.read_catalog(catalog.path).values())
        except FuxiError:
            continue  # unsupported locale or a catalog in a legacy encoding
    return {lang: sorted(strings) for lang, strings in sorted(pools.items())}


def write_corpus(pools: dict[str, list[str]], size: int, copy_share: float, seed: int, path: Path) -> np.ndarray:
    """`size` documents as JSONL; returns the planted (original, copy) index pairs."""
    rng = random.Random(seed)
    langs = list(pools)
    weights = [len(pools[lang]) ** 0.5 for lang in langs]  # imbalanced, as the catalogs are, but every one present
    originals: list[tuple[int, str, str]] = []  # (index, language, text), the sources of copies
    pairs = []
    with open(path, "w", encoding="utf-8") as f:
        for i in range(size):
            if originals and rng.random() < copy_share:
                source, lang, source_text = rng.choice(originals)
                text = _edit(rng, source_text, pools[lang], lang)
                pairs.append((source, i))
            else:
                lang = rng.choices(langs, weights)[0]
                text = "\n".join(rng.choices(pools[lang], k=rng.randint(4, 40)))
                originals.append((i, lang, text))
            f.write(json.dumps({"text": text, "id": str(i), "metadata": {"language": lang}}, ensure_ascii=False) + "\n")
    return np.array(pairs, dtype=np.int64)


def _edit(rng: random.Random, text: str, pool: list[str], lang: str) -> str:
    """Replace 0.2-6% of the words (characters for unspaced scripts) with ones from another string of the language."""
    units = list(text) if lang in UNSPACED else text.split(" ")
    donor = rng.choice(pool)
    donor_units = list(donor) if lang in UNSPACED else donor.split(" ")
    for _ in range(max(1, round(len(units) * rng.uniform(0.002, 0.06)))):
        units[rng.randrange(len(units))] = rng.choice(donor_units)
    return ("" if lang in UNSPACED else " ").join(units)


def read_corpus(path: Path):
    from datatrove.data import Document

    with open(path, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            yield Document(text=row["text"], id=row["id"], metadata=row["metadata"])


def shingle_strings(text: str, label: str, config) -> list[str]:
    """Our shingles as strings (the same tokens and n-gram sizes as `fuxitranyu.data.shingles`), for datasketch."""
    from fuxitranyu.data.shingles import SINGLE, TEXT, char_classes, tokens

    toks = tokens(text, label)
    table = char_classes()[TEXT]
    alone = [len(t) == 1 and table[ord(t)] == SINGLE for t in toks]
    single_chars = sum(alone)
    run_chars = sum(len(t) for t, a in zip(toks, alone) if not a)
    n = config.char_ngrams if single_chars > run_chars else config.word_ngrams
    if 0 < len(toks) < n:
        return [" ".join(toks)]
    return [" ".join(toks[i : i + n]) for i in range(len(toks) - n + 1)]


def _run(method: str, corpus: Path, out: Path, result) -> None:
    """One method in a fresh process: (removed, kept_as) to `out`; seconds and peak RSS to `result`."""
    from fuxitranyu.data.dedup import MinHashConfig, deduplicate
    from fuxitranyu.data.shingles import char_classes

    config = MinHashConfig()
    char_classes()
    timings = {}
    baseline = _peak_rss_mb()
    started = time.perf_counter()
    if method == "fuxitranyu":
        with tempfile.TemporaryDirectory(dir=out.parent) as work:
            dedup = deduplicate(read_corpus(corpus), config, workdir=work)
        removed, kept_as = dedup.removed, dedup.kept_as
    else:
        from datasketch import MinHash, MinHashLSH

        lsh = MinHashLSH(num_perm=config.num_perm, params=(config.bands, config.rows))
        removed, kept_as = [], []
        shingling = 0.0
        for i, doc in enumerate(read_corpus(corpus)):
            tick = time.perf_counter()
            shingles = [s.encode("utf-8") for s in shingle_strings(doc.text, doc.metadata["language"], config)]
            shingling += time.perf_counter() - tick
            if not shingles:
                continue
            minhash = MinHash(num_perm=config.num_perm, seed=config.seed)
            minhash.update_batch(shingles)
            found = lsh.query(minhash)
            if found:
                removed.append(i)
                kept_as.append(min(found))
            else:
                lsh.insert(i, minhash)
        timings["shingling"] = shingling
    timings["total"] = time.perf_counter() - started
    timings["minhash+lsh"] = timings["total"] - timings.get("shingling", 0.0)
    np.savez(out, removed=np.asarray(removed, np.int64), kept_as=np.asarray(kept_as, np.int64))
    result.put({"seconds": timings, "peak_rss_mb": _peak_rss_mb(), "baseline_rss_mb": baseline})


def _write(pools_from: str, sizes: list[int], copy_share: float, seed: int, work: Path, result) -> None:
    """Write every corpus in a fresh process, so that the parent (whose peak RSS children inherit) stays small."""
    pools = load_pools(pools_from)
    for size in sizes:
        np.save(work / f"pairs-{size}.npy", write_corpus(pools, size, copy_share, seed, work / f"corpus-{size}.jsonl"))
    result.put(f"{len(pools)} languages, {sum(map(len, pools.values())):,} strings")


def _evaluate(corpus: Path, pairs: Path, size: int, found: Path, result) -> None:
    from fuxitranyu.data.dedup import document_shingles

    pairs, found = np.load(pairs), np.load(found)
    removed, kept_as = found["removed"], found["kept_as"]
    rep = np.arange(size)  # the document kept for each one
    rep[removed] = kept_as
    shingles = {}
    wanted = set(pairs.ravel().tolist()) | set(removed.tolist()) | set(kept_as.tolist())
    for i, doc in enumerate(read_corpus(corpus)):
        if i in wanted:
            shingles[i] = document_shingles(doc.text, doc.metadata["language"])

    def jaccard(i: int, j: int) -> float:
        a, b = shingles[i], shingles[j]
        return len(np.intersect1d(a, b)) / max(len(np.union1d(a, b)), 1)

    sims = np.array([jaccard(i, j) for i, j in pairs])
    hit = rep[pairs[:, 0]] == rep[pairs[:, 1]]
    planted = {(int(a), int(b)) for a, b in pairs} | {(int(b), int(a)) for a, b in pairs}
    exact = [(int(d), int(k)) in planted for d, k in zip(removed, kept_as)]
    loose = [e or jaccard(int(d), int(k)) >= 0.5 for e, d, k in zip(exact, removed, kept_as)]
    result.put({
        "planted": len(pairs),
        "removed": int(len(removed)),
        "recall": float(hit.mean()),
        "recall_j08": float(hit[sims >= 0.8].mean()),
        "pairs_j08": int((sims >= 0.8).sum()),
        "precision_planted": float(np.mean(exact)) if exact else 1.0,
        "precision_j05": float(np.mean(loose)) if loose else 1.0,
    })


def _in_process(context, target, *args):
    queue = context.Queue()
    process = context.Process(target=target, args=(*args, queue))
    process.start()
    answer = queue.get()
    process.join()
    return answer


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[50_000, 100_000])
    parser.add_argument("--copies", type=float, default=0.1, help="share of documents that are planted near-copies")
    parser.add_argument("--locale-dir", default="/usr/share/locale")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    load = os.getloadavg()
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    context = multiprocessing.get_context("spawn")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-dedup-") as tmp:
        work = Path(tmp)
        print("corpus:", _in_process(context, _write, args.locale_dir, args.sizes, args.copies, args.seed, work))
        for size in args.sizes:
            corpus = work / f"corpus-{size}.jsonl"
            for method in ("fuxitranyu", "datasketch"):
                found = work / f"{method}-{size}.npz"
                run = _in_process(context, _run, method, corpus, found)
                run |= _in_process(context, _evaluate, corpus, work / f"pairs-{size}.npy", size, found)
                run |= {"method": method, "size": size}
                rows.append(run)
                seconds = run["seconds"]["total" if method == "fuxitranyu" else "minhash+lsh"]
                print(f"{method:>10} {size:>7,} docs: {size / seconds:8,.0f} docs/s, recall {run['recall']:.3f} "
                      f"(J>=0.8: {run['recall_j08']:.3f} of {run['pairs_j08']}), precision "
                      f"{run['precision_planted']:.3f} planted / {run['precision_j05']:.3f} J>=0.5, "
                      f"peak RSS {run['peak_rss_mb']:.0f} MB (baseline {run['baseline_rss_mb']:.0f}), "
                      f"{json.dumps({k: round(v, 1) for k, v in run['seconds'].items()})} s")
    print()
    print("| documents | method | docs/s | recall | recall J≥0.8 | precision (planted / J≥0.5) | peak RSS MB |")
    print("|---|---|---|---|---|---|---|")
    for run in rows:
        seconds = run["seconds"]["total" if run["method"] == "fuxitranyu" else "minhash+lsh"]
        print(f"| {run['size']:,} | {run['method']} | {run['size'] / seconds:,.0f} | {run['recall']:.3f} | "
              f"{run['recall_j08']:.3f} | {run['precision_planted']:.3f} / {run['precision_j05']:.3f} | "
              f"{run['peak_rss_mb']:.0f} |")
    print()
    for size in args.sizes:
        ours, theirs = (next(r for r in rows if (r["size"], r["method"]) == (size, m))
                        for m in ("fuxitranyu", "datasketch"))
        speed = theirs["seconds"]["minhash+lsh"] / ours["seconds"]["total"]
        print(f"{size:,} documents, ours / datasketch: speed {speed:.2f}x, "
              f"recall {ours['recall'] / theirs['recall']:.3f}, "
              f"recall J>=0.8 {ours['recall_j08'] / theirs['recall_j08']:.3f}, "
              f"peak RSS {ours['peak_rss_mb'] / theirs['peak_rss_mb']:.2f}, "
              f"RSS above baseline {(ours['peak_rss_mb'] - ours['baseline_rss_mb']):.0f} vs "
              f"{(theirs['peak_rss_mb'] - theirs['baseline_rss_mb']):.0f} MB")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
