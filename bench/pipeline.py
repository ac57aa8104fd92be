"""Benchmark of the image pipeline (app/imaging.py).

    .venv/bin/python bench/pipeline.py [--photos DIR] [--section cpu --section rss]

Sections (each a function taking the list of photo paths; add new ones to
SECTIONS):
  cpu  CPU time (time.process_time, median of --reps runs) of
       make_derivatives against a naive baseline measured in the same run:
       full decode, exif_transpose, an independent LANCZOS resize per size
       from the full image, ImageOps.fit for the thumbnail, JPEG q85 each.
  rss  peak RSS (ru_maxrss) of a fresh subprocess running make_derivatives
       over every photo, and of one running the baseline.

Targets, for a 12 MP JPEG: <= 50 ms CPU per photo, >= 5x faster than the
baseline, peak RSS <= 150 MB.
"""
from __future__ import annotations

import argparse
import io
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from PIL import Image, ImageOps  # noqa: E402

from app.imaging import THUMBNAIL_SIZE, WIDTHS, make_derivatives  # noqa: E402

DEFAULT_PHOTOS = ROOT.parent / "shared" / "photos"
TARGET_MS = 50.0
TARGET_SPEEDUP = 5.0
TARGET_RSS_MB = 150.0


def naive_derivatives(data: bytes) -> dict[str, bytes]:
    """The obvious implementation, as a yardstick: decode everything at
    full size, resize each derivative independently with LANCZOS."""
    img = Image.open(io.BytesIO(data))
    img = ImageOps.exif_transpose(img.convert("RGB"))
    sized = {}
    for name, width in WIDTHS.items():
        width = min(width, img.width)
        sized[name] = img.resize((width, round(img.height * width / img.width)), Image.LANCZOS)
    sized["thumbnail"] = ImageOps.fit(img, (THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.LANCZOS)
    out = {}
    for name, derivative in sized.items():
        buf = io.BytesIO()
        derivative.save(buf, "JPEG", quality=85)
        out[name] = buf.getvalue()
    return out


def ours(data: bytes) -> None:
    make_derivatives(data)


def baseline(data: bytes) -> None:
    naive_derivatives(data)


IMPLEMENTATIONS = {"ours": ours, "baseline": baseline}


def _cpu_ms(fn, data: bytes) -> float:
    start = time.process_time()
    fn(data)
    return (time.process_time() - start) * 1000


def bench_cpu(photos: list[Path], reps: int = 7) -> dict:
    """Median CPU ms per photo for ours and the baseline. The two are
    interleaved repetition by repetition, so a noisy neighbour on this
    shared machine hits both alike."""
    print(f"\n== CPU per photo (median of {reps}, time.process_time) ==")
    print(f"{'photo':<16}{'ours ms':>10}{'baseline ms':>14}{'speedup':>10}")
    rows = []
    for path in photos:
        data = path.read_bytes()
        for fn in IMPLEMENTATIONS.values():  # warm-up: imports, first-call costs
            fn(data)
        times = {name: [] for name in IMPLEMENTATIONS}
        for _ in range(reps):
            for name, fn in IMPLEMENTATIONS.items():
                times[name].append(_cpu_ms(fn, data))
        ours_ms = statistics.median(times["ours"])
        base_ms = statistics.median(times["baseline"])
        rows.append((path.name, ours_ms, base_ms, base_ms / ours_ms))
        print(f"{path.name:<16}{ours_ms:>10.1f}{base_ms:>14.1f}{base_ms / ours_ms:>9.1f}x")
    mean_ours = statistics.mean(r[1] for r in rows)
    mean_base = statistics.mean(r[2] for r in rows)
    mean_ratio = statistics.mean(r[3] for r in rows)
    worst = max(r[1] for r in rows)
    print(f"{'mean':<16}{mean_ours:>10.1f}{mean_base:>14.1f}{mean_ratio:>9.1f}x")
    ok = worst <= TARGET_MS and min(r[3] for r in rows) >= TARGET_SPEEDUP
    print(f"summary: ours {mean_ours:.1f} ms/photo (worst {worst:.1f}), baseline "
          f"{mean_base:.1f} ms, speedup {mean_ratio:.1f}x "
          f"[target <= {TARGET_MS:.0f} ms and >= {TARGET_SPEEDUP:.0f}x: {'PASS' if ok else 'FAIL'}]")
    return {"rows": rows, "mean_ours_ms": mean_ours, "mean_baseline_ms": mean_base,
            "mean_speedup": mean_ratio, "pass": ok}


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _vm_hwm_mb() -> float:
    """Peak RSS of this process image from /proc (Linux), as a cross-check."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _rss_child(impl: str, photos: list[Path]) -> None:
    """Runs in the fresh subprocess: prints the peak RSS after the imports
    alone, then ru_maxrss and VmHWM after processing every photo."""
    floor = _max_rss_mb()
    fn = IMPLEMENTATIONS[impl]
    for path in photos:
        fn(path.read_bytes())
    print(f"{floor:.1f} {_max_rss_mb():.1f} {_vm_hwm_mb():.1f}")


def _noop() -> None:
    pass


def bench_rss(photos: list[Path]) -> dict:
    """Peak RSS of a fresh interpreter processing all photos, per impl."""
    print("\n== Peak RSS, fresh subprocess over all photos (ru_maxrss) ==")
    result = {}
    for impl in IMPLEMENTATIONS:
        out = subprocess.run(
            [sys.executable, __file__, "--rss-child", impl, *map(str, photos)],
            check=True, capture_output=True, text=True,
            # A preexec_fn forces a real fork() + exec. With the vfork() that
            # subprocess otherwise uses, Linux hands the child the parent's
            # ru_maxrss (after the cpu section: the baseline's ~200 MB).
            preexec_fn=_noop,
        ).stdout.split()
        floor, peak, hwm = float(out[0]), float(out[1]), float(out[2])
        result[impl] = peak
        print(f"{impl:<10} peak {peak:7.1f} MB  (VmHWM {hwm:.1f} MB; "
              f"interpreter + imports alone: {floor:.1f} MB)")
    ok = result["ours"] <= TARGET_RSS_MB
    print(f"summary: ours {result['ours']:.1f} MB, baseline {result['baseline']:.1f} MB "
          f"[target <= {TARGET_RSS_MB:.0f} MB: {'PASS' if ok else 'FAIL'}]")
    return result


SECTIONS = {"cpu": bench_cpu, "rss": bench_rss}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS,
                        help="directory of JPEGs (default: %(default)s)")
    parser.add_argument("--section", action="append", choices=list(SECTIONS),
                        help="section to run, repeatable (default: all)")
    parser.add_argument("--rss-child", choices=list(IMPLEMENTATIONS), help=argparse.SUPPRESS)
    parser.add_argument("paths", nargs="*", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_child:
        _rss_child(args.rss_child, args.paths)
        return
    photos = sorted(p for p in args.photos.iterdir()
                    if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp", ".heic"})
    if not photos:
        parser.error(f"no photos in {args.photos}")
    print(f"{len(photos)} photos from {args.photos}")
    for name in args.section or list(SECTIONS):
        SECTIONS[name](photos)


if __name__ == "__main__":
    main()
