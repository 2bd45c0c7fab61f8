"""`sftplan data check` at scale: rows/s, peak RSS, and recall/precision of what was planted.

    PYTHONPATH=. python benchmarks/data_check.py               # 100k rows of ~200 words (the issue's target)
    PYTHONPATH=. python benchmarks/data_check.py --rows 20000  # quicker

Generates a training file (prompt/response rows, Zipf-distributed words, numbers and dates in ordinary
text so the PII prefilters are exercised) with planted exact duplicates (case/whitespace changed), near
duplicates (2-4 of ~200 words replaced; the true 3-word-shingle Jaccard of each pair is computed and
printed) and pattern PII (email, phone, credit card, IBAN, IPv4, US SSN: one per row, valid checksums).
The check runs in a child process (advisor.datacheck.check, the same call as `sftplan data check`), so
its peak RSS is its own. Also times datasketch against rensa MinHash + LSH on the same shingles.
Targets (issue 16): 100k rows < 2 min on the 2-core machine, memory bounded, recall exact 100%,
near >= 95%, pattern PII >= 95%, precision >= 95%.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from advisor.datacheck import DEFAULT_NEAR_THRESHOLD, DEFAULT_SHINGLE_WORDS, normalized_text, shingles  # noqa: E402

PII_KINDS = ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS", "US_SSN")


def _vocab(rng: random.Random, n: int = 20000) -> tuple[list[str], list[float]]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = sorted({"".join(rng.choice(letters) for _ in range(rng.randint(2, 9))) for _ in range(n * 2)})[:n]
    rng.shuffle(words)
    cum, total = [], 0.0
    for i in range(len(words)):
        total += 1.0 / (i + 1)
        cum.append(total)
    return words, cum


def _luhn_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            d -= 9 if d > 9 else 0
        total += d
    return str((10 - total % 10) % 10)


def _pii(rng: random.Random, kind: str) -> str:
    if kind == "EMAIL_ADDRESS":
        return f"{rng.choice(['anna', 'li.wei', 'j.smith', 'ops-team'])}{rng.randint(1, 999)}@{rng.choice(['example.com', 'mail.org', 'corp.co.uk'])}"
    if kind == "PHONE_NUMBER":
        area = rng.choice(["212", "415", "617", "312", "206", "303", "512", "404", "305", "702"])
        num = f"{area}-{rng.randint(200, 999)}-{rng.randint(1000, 9999)}"
        return rng.choice([f"+1 {num}", f"({area}) {num[4:]}", num])
    if kind == "CREDIT_CARD":
        body = "4" + "".join(str(rng.randint(0, 9)) for _ in range(14))
        n = body + _luhn_digit(body)
        return " ".join(n[i:i + 4] for i in range(0, 16, 4))
    if kind == "IBAN_CODE":
        bban = "".join(str(rng.randint(0, 9)) for _ in range(18))
        digits = int(bban + "131400")  # D=13 E=14, check digits 00
        return f"DE{98 - digits % 97:02d}{bban}"
    if kind == "IP_ADDRESS":
        return ".".join(str(rng.randint(1, 254)) for _ in range(4))
    area = rng.choice([n for n in range(1, 900) if n != 666])
    return f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"


def generate(path: Path, rows: int, seed: int) -> dict:
    """Write the file; return what was planted, by 1-based line."""
    rng = random.Random(seed)
    words, weights = _vocab(rng)
    n_plant = max(1, rows // 100)  # 1% exact duplicates, 1% near duplicates, 1% rows with PII
    kinds = ["plain"] * (rows - 3 * n_plant) + ["exact"] * n_plant + ["near"] * n_plant + ["pii"] * n_plant
    head = min(rows // 4, 5 * n_plant)
    rng.shuffle(kinds)
    for i in range(head):  # the first rows are all plain: they are the sources copied later
        if kinds[i] != "plain":
            j = rng.randrange(head, rows)
            while kinds[j] != "plain":
                j = rng.randrange(head, rows)
            kinds[i], kinds[j] = kinds[j], kinds[i]
    sources = list(range(1, head + 1))
    rng.shuffle(sources)
    kept: dict[int, dict] = {}
    planted = {"exact": [], "near": [], "near_true_jaccard": [], "pii": {}}

    def text(n: int) -> str:
        out = rng.choices(words, cum_weights=weights, k=n)
        for _ in range(rng.randint(0, 3)):  # ordinary numbers: years, counts, versions, dates
            out.insert(rng.randrange(len(out)), rng.choice([str(rng.randint(1900, 2030)), str(rng.randint(1, 500)),
                                                            f"v{rng.randint(1, 9)}.{rng.randint(0, 20)}",
                                                            f"{rng.randint(2000, 2030)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"]))
        return " ".join(out)

    with path.open("w", encoding="utf-8") as fh:
        for line, kind in enumerate(kinds, 1):
            if line <= head or kind == "plain":
                row = {"prompt": text(rng.randint(30, 60)), "response": text(rng.randint(130, 170))}
                if line <= head:
                    kept[line] = row
            elif kind == "exact":
                src = sources.pop()
                s = kept[src]
                row = {"prompt": "  " + s["prompt"].upper(), "response": s["response"].replace(" ", "  ", 5) + "\n"}
                planted["exact"].append((src, line))
            elif kind == "near":
                src = sources.pop()
                s = kept[src]
                resp = s["response"].split()
                for _ in range(rng.randint(2, 4)):
                    resp[rng.randrange(len(resp))] = rng.choice(words)
                row = {"prompt": s["prompt"], "response": " ".join(resp)}
                a = set(shingles(normalized_text([{"role": "user", "content": s["prompt"]}, {"role": "assistant", "content": s["response"]}]), DEFAULT_SHINGLE_WORDS))
                b = set(shingles(normalized_text([{"role": "user", "content": row["prompt"]}, {"role": "assistant", "content": row["response"]}]), DEFAULT_SHINGLE_WORDS))
                planted["near"].append((src, line))
                planted["near_true_jaccard"].append(len(a & b) / len(a | b))
            else:
                pk = PII_KINDS[line % len(PII_KINDS)]
                resp = text(rng.randint(130, 170)).split()
                resp.insert(rng.randrange(len(resp)), _pii(rng, pk))
                row = {"prompt": text(rng.randint(30, 60)), "response": " ".join(resp)}
                planted["pii"][line] = pk
            fh.write(json.dumps(row) + "\n")
    return planted


def child(path: str, out: str) -> None:
    from advisor.datacheck import check

    from advisor.datacheck import pii_scanner

    pii_scanner()  # the imports (presidio pulls spaCy and transformers: ~5-10 s) are timed apart
    ru = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = ru.ru_utime + ru.ru_stime
    t0 = time.perf_counter()
    r = check(path, max_seq_len=4096)
    wall = time.perf_counter() - t0
    d = r.to_dict()
    d["wall_s"] = wall
    ru = resource.getrusage(resource.RUSAGE_SELF)
    d["peak_rss_bytes"] = ru.ru_maxrss * 1024
    d["cpu_s"] = ru.ru_utime + ru.ru_stime
    d["cpu_before_s"] = cpu0
    Path(out).write_text(json.dumps(d), encoding="utf-8")


def _pairs(groups: list[list[int]]) -> set[tuple[int, int]]:
    return {(g[0], x) for g in groups for x in g[1:]}


def minhash_libraries(path: Path, n: int = 5000) -> dict[str, float]:
    """rows/s of MinHash(128) + LSH(0.8) insert+query on the same shingles, datasketch vs rensa."""
    from datasketch import MinHash, MinHashLSH
    from rensa import RMinHash, RMinHashLSH

    from advisor.datacheck import lsh_bands

    sets = []
    with path.open(encoding="utf-8") as fh:
        for _, line in zip(range(n), fh):
            row = json.loads(line)
            sets.append(shingles(normalized_text([{"role": "user", "content": row["prompt"]},
                                                  {"role": "assistant", "content": row["response"]}]), DEFAULT_SHINGLE_WORDS))
    out = {}
    t = time.perf_counter()
    lsh = MinHashLSH(threshold=DEFAULT_NEAR_THRESHOLD, num_perm=128)
    for i, s in enumerate(sets):
        m = MinHash(num_perm=128)
        m.update_batch([x.encode() for x in s])
        lsh.query(m)
        lsh.insert(i, m)
    out["datasketch"] = len(sets) / (time.perf_counter() - t)
    t = time.perf_counter()
    lsh2 = RMinHashLSH(threshold=DEFAULT_NEAR_THRESHOLD, num_perm=128, num_bands=lsh_bands(DEFAULT_NEAR_THRESHOLD, 128))
    for i, s in enumerate(sets):
        m = RMinHash(num_perm=128, seed=1)
        m.update(s)
        lsh2.query(m)
        lsh2.insert(i, m)
    out["rensa"] = len(sets) / (time.perf_counter() - t)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--child", nargs=2, metavar=("TRAIN", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        train = Path(tmp) / "train.jsonl"
        t = time.perf_counter()
        planted = generate(train, args.rows, args.seed)
        size = train.stat().st_size
        print(f"generated {args.rows:,} rows ({size / 2**20:.0f} MiB) in {time.perf_counter() - t:.0f} s; "
              f"planted {len(planted['exact'])} exact, {len(planted['near'])} near "
              f"(true Jaccard {min(planted['near_true_jaccard']):.2f}-{max(planted['near_true_jaccard']):.2f}), "
              f"{len(planted['pii'])} PII rows")
        print(f"load average before the check: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
        out = Path(tmp) / "result.json"
        t = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--child", str(train), str(out)], check=True,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
        total_s = time.perf_counter() - t
        d = json.loads(out.read_text(encoding="utf-8"))
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f"check: {d['rows']:,} rows in {d['wall_s']:.1f} s ({d['rows'] / d['wall_s']:,.0f} rows/s); "
              f"{total_s:.1f} s with interpreter start and imports; peak RSS {d['peak_rss_bytes'] / 2**20:.0f} MiB "
              f"({d['peak_rss_bytes'] / d['rows']:,.0f} bytes/row) for a {size / 2**20:.0f} MiB file")
        cpu = d["cpu_s"] - d["cpu_before_s"]
        print(f"CPU time of the check: {cpu:.1f} s ({d['rows'] / cpu:,.0f} rows per CPU-second; wall/CPU "
              f"{d['wall_s'] / cpu:.1f}: the rest is waiting for a core on the shared machine)")

        exact_found = _pairs(d["exact_duplicates"])
        want = set(planted["exact"])
        print(f"exact duplicates: recall {len(want & exact_found) / len(want):.1%} ({len(want & exact_found)}/{len(want)}), "
              f"precision {len(want & exact_found) / max(1, len(exact_found)):.1%} ({len(exact_found)} reported)")
        near_found = _pairs([g["lines"] for g in d["near_duplicates"]])
        want = set(planted["near"])
        print(f"near duplicates (threshold {DEFAULT_NEAR_THRESHOLD}): recall {len(want & near_found) / len(want):.1%} "
              f"({len(want & near_found)}/{len(want)}), precision {len(want & near_found) / max(1, len(near_found)):.1%} "
              f"({len(near_found)} reported)")
        hits = {(h["line"], h["kind"]) for h in d["pii"]}
        want = {(line, kind) for line, kind in planted["pii"].items()}
        per_kind = {k: (sum(1 for x in want if x[1] == k and x in hits), sum(1 for x in want if x[1] == k)) for k in PII_KINDS}
        flagged_rows = {h["line"] for h in d["pii"]}
        print(f"pattern PII: recall {len(want & hits) / len(want):.1%} ({len(want & hits)}/{len(want)}; "
              + ", ".join(f"{k} {a}/{b}" for k, (a, b) in per_kind.items()) + ")")
        print(f"  precision by row {len(flagged_rows & set(planted['pii'])) / max(1, len(flagged_rows)):.1%} "
              f"({len(flagged_rows)} rows flagged); by (row, kind) {len(want & hits) / max(1, len(hits)):.1%} "
              f"({len(hits)} (row, kind) reported; extra kinds: "
              + ", ".join(sorted({f'{k}' for (_, k) in hits - want})) + ")")
        lib = minhash_libraries(train)
        print(f"MinHash(128) + LSH insert+query, 5,000 rows: datasketch {lib['datasketch']:,.0f} rows/s, "
              f"rensa {lib['rensa']:,.0f} rows/s ({lib['rensa'] / lib['datasketch']:.0f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
