"""Units. GiB (2**30) and GB (10**9) never mix: memory is shown in GiB, link speeds in GB/s."""

GIB = 2**30
GB = 10**9
TB = 10**12
TFLOP = 10**12
SECONDS_PER_HOUR = 3600


def bytes_to_gib(n_bytes: float) -> float:
    return n_bytes / GIB


def gib_to_bytes(gib: float) -> int:
    return int(round(gib * GIB))


def gb_to_bytes(gb: float) -> int:
    return int(round(gb * GB))


def gbit_per_s_to_bytes_per_s(gbit: float) -> float:
    """Network links are quoted in Gbit/s (e.g. 3,200 Gbps EFA)."""
    return gbit * GB / 8
