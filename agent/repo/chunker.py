"""The repository's content-defined chunker: FastCDC with the repository's parameters and a
secret gear seed from its master key, so cut points (and so deduplication) are the same for
every run of one repository and reveal nothing about content without the key."""

from __future__ import annotations

import pyfastcdc

from agent.repo.format import ChunkerParams


def make_chunker(params: ChunkerParams, seed: int) -> pyfastcdc.FastCDC:
    # pyfastcdc's avg_size excludes min_size (cut-point skipping); the config stores what users
    # mean by "average"
    avg = params.avg_size - params.min_size if params.avg_size > 2 * params.min_size else params.avg_size
    return pyfastcdc.FastCDC(avg_size=avg, min_size=params.min_size, max_size=params.max_size,
                             normalized_chunking=1, seed=seed)
