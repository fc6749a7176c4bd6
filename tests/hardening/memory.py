"""Reading another process's memory while it is attacked, and reporting the figures.

`rss(pid)` is the resident set size from /proc/PID/status (VmRSS). `RssSampler` samples it
every 20 ms in a thread and keeps the peak. `report(...)` prints one line of figures and, when
$JESUS_MEMORY_REPORT names a file, appends them to it as one JSON line.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

MiB = 1024 * 1024
INTERVAL = 0.02


def rss(pid: int) -> int:
    """Resident set size of process `pid`, in bytes."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024  # the kernel reports kB
    raise RuntimeError(f"no VmRSS for process {pid} (a zombie?)")


def steady_rss(pid: int, samples: int = 5, interval: float = INTERVAL) -> int:
    """The median of a few samples: one figure for a process at rest."""
    values = []
    for i in range(samples):
        if i:
            time.sleep(interval)
        values.append(rss(pid))
    return int(statistics.median(values))


class RssSampler:
    """`with RssSampler(pid) as sampler:` samples the RSS of `pid` every `interval` seconds
    until the block exits; `sampler.peak` is the largest figure seen (including one taken as
    the block starts and one as it ends)."""

    def __init__(self, pid: int, interval: float = INTERVAL) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rss-{pid}", daemon=True)
        self.error: BaseException | None = None

    def _sample(self) -> None:
        self.samples.append((time.monotonic(), rss(self.pid)))

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                self._sample()
        except BaseException as exc:  # the process died: the test will say why
            self.error = exc

    def __enter__(self) -> RssSampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if self.error is None:
            try:
                self._sample()
            except (OSError, RuntimeError) as err:
                self.error = err

    @property
    def peak(self) -> int:
        return max(value for _, value in self.samples)

    @property
    def peak_at(self) -> float:
        """When the peak was seen (time.monotonic)."""
        return max(self.samples, key=lambda sample: sample[1])[0]


@dataclass
class Figures:
    """What one test measured, in bytes and seconds; `report` prints it in MiB and ms."""

    test: str
    backend: str
    baseline: int
    peak: int
    after: int  # once the attack is over
    after_trimmed: int  # the same, once the allocator gave back what it keeps
    peak_bound: int  # peak - baseline must stay below this
    after_bound: int  # after_trimmed - baseline must stay below this
    probe_calls: int  # the probe's calls that overlapped the attack
    probe_errors: int
    probe_max_latency: float
    attack_seconds: float
    samples: int
    outcome: dict[str, Any] = field(default_factory=dict)

    @property
    def growth(self) -> int:
        return self.peak - self.baseline

    @property
    def residue(self) -> int:
        return self.after - self.baseline

    @property
    def held(self) -> int:
        """What live objects still hold after the attack (the allocator's cache given back)."""
        return self.after_trimmed - self.baseline

    def line(self) -> str:
        return (
            f"[memory] {self.test}[{self.backend}]: baseline {self.baseline / MiB:.1f} MiB, "
            f"peak {self.peak / MiB:.1f} MiB (+{self.growth / MiB:.1f}, bound "
            f"+{self.peak_bound / MiB:.1f}), after {self.after / MiB:.1f} MiB "
            f"({self.residue / MiB:+.1f}; trimmed {self.after_trimmed / MiB:.1f} MiB, "
            f"{self.held / MiB:+.1f}, bound +{self.after_bound / MiB:.1f}); "
            f"probe {self.probe_calls} calls, {self.probe_errors} errors, max latency "
            f"{self.probe_max_latency * 1000:.0f} ms; attack {self.attack_seconds:.2f} s, "
            f"{self.samples} samples; {json.dumps(self.outcome, sort_keys=True)}"
        )

    def record(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("baseline", "peak", "after", "after_trimmed", "peak_bound", "after_bound"):
            data[f"{key}_mib"] = round(data.pop(key) / MiB, 1)
        data["growth_mib"] = round(self.growth / MiB, 1)
        data["residue_mib"] = round(self.residue / MiB, 1)
        data["held_mib"] = round(self.held / MiB, 1)
        data["probe_max_latency_ms"] = round(data.pop("probe_max_latency") * 1000, 1)
        data["attack_seconds"] = round(self.attack_seconds, 2)
        return data


def report(figures: Figures) -> None:
    """Print the figures (seen with `pytest -s`, or in a failure's captured output) and
    append them to $JESUS_MEMORY_REPORT, one JSON line per test, when it is set."""
    print(figures.line(), file=sys.stderr)
    path = os.environ.get("JESUS_MEMORY_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(figures.record(), sort_keys=True) + "\n")
