"""The simulated Hub: a generated world of models served over real HTTP on loopback.

    World, WorldSpec, build_world    a deterministic lineage world with the defects seen in the wild
                                     (`tree=N`: a watched tree of about N among unrelated models)
    SimHub                           the HTTP server the real huggingface_hub client talks to, as strict
                                     as the Hub: `expand` checked per route, a keyset cursor, rate-limit
                                     headers on every response, redirects from renamed repos
    FaultRule                        injected failures: 429s, 5xx, dropped and truncated responses

The real-Hub facts the sim relies on are pinned, with their sources, in tests/auditor/simhub/test_hub_facts.py.

>>> from auditor.simhub import SimHub, build_world, WorldSpec
>>> with SimHub(build_world(WorldSpec(size=200, seed=1))) as hub:   # doctest: +SKIP
...     print(hub.url)   # export HF_ENDPOINT=<this>
"""

from auditor.simhub.faults import FaultRule
from auditor.simhub.server import SimHub
from auditor.simhub.world import Truth, World, WorldSpec, build_world

__all__ = ["FaultRule", "SimHub", "Truth", "World", "WorldSpec", "build_world"]
