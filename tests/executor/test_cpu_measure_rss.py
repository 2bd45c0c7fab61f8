"""`sftplan catalog --measure cpu`'s host runtime: the RSS of a fresh process after the executor's run imports."""

from advisor.catalog import load_catalog
from executor.cpu_measure import host_runtime_rss_bytes


def test_the_runtime_is_measured_in_a_fresh_process_and_matches_the_catalog():
    bare = host_runtime_rss_bytes(("json",))  # the interpreter alone: what the measuring process holds does not count
    full = host_runtime_rss_bytes()
    assert bare < 100 * 2**20 and full > bare + 200 * 2**20  # torch + transformers + peft: hundreds of MiB
    recorded = load_catalog().gpu("cpu").host_runtime_gib * 2**30  # this host's figure (data/hardware_catalog.yaml)
    assert 0.5 < full / recorded < 2.0, f"measured {full / 2**30:.3f} GiB vs catalog {recorded / 2**30:.3f} GiB"
