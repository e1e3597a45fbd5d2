"""The one progress bar: a tqdm bar fed by the library's :class:`seco_data.jobs.Progress` events.

The library never draws; every long command hands ``progress=Bar(...)`` to the library call. A bar
is created on the first event (so errors raised before any work print on a clean line), one per
``stage``; log lines (retries, warnings) print above the bars, not through them.
"""

from __future__ import annotations

import contextlib
from typing import Iterable


class Bar:
    """Progress bars with rate and ETA (when the total is known) and the counts by outcome."""

    def __init__(self, desc: str, *, quiet: bool = False, shown: Iterable[str] | None = None, leave: bool = True):
        self.desc, self.quiet, self.leave = desc, quiet, leave
        self.shown = tuple(shown) if shown is not None else None
        self.bars: dict = {}
        self._redirect = contextlib.ExitStack()

    def __enter__(self) -> "Bar":
        from tqdm.contrib.logging import logging_redirect_tqdm

        self._redirect.enter_context(logging_redirect_tqdm())
        return self

    def __exit__(self, *exc) -> None:
        self.close()
        self._redirect.close()

    def __call__(self, p) -> None:
        from tqdm import tqdm

        bar = self.bars.get(p.stage)
        if bar is not None and (bar.total != p.total or p.done < bar.n):
            bar.close()  # a new pass (another epoch, another split): a fresh bar
            bar = None
        if bar is None:
            desc = f"{self.desc} {p.stage}".strip() if p.stage else self.desc
            bar = self.bars[p.stage] = tqdm(total=p.total, initial=p.done, unit=p.unit, desc=desc,
                                            disable=self.quiet, dynamic_ncols=True, mininterval=0.5, smoothing=0.1,
                                            leave=self.leave and not p.stage)
        bar.update(p.done - bar.n)
        post = {k: v for k, v in {**p.counts, **p.info}.items() if self.shown is None or k in self.shown}
        if post:
            bar.set_postfix({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in post.items()}, refresh=False)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()
