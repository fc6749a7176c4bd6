"""Arrays. The schema either side applies to position i is `prefixItems[i]`, or else `items`
(draft-07's `items: [...]` / `additionalItems` were rewritten so by drafts.py):

- each position up to the longer prefix, then the rest, compared like values, as far as the
  writer's arrays can reach (its `maxItems`, or an item schema `false`);
- `minItems` / `maxItems` like bounds;
- `uniqueItems`: a reader's holds if the writer's does, or the writer never sends two items;
- `contains`: the writer must guarantee an item the reader's `contains` accepts: its own
  `contains` fits it, or all its items do and it sends at least one. `minContains` /
  `maxContains` other than the writer's are undecidable.
"""

from __future__ import annotations

from typing import Any

from jesus.compat import rules
from jesus.compat.examples import first_valid, valid_examples
from jesus.compat.merge import canon
from jesus.compat.report import UNDECIDABLE, Issue
from jesus.compat.resolve import Context
from jesus.compat.witness import in_array, refuted


def compare(w: dict[str, Any], r: dict[str, Any], cx: Context, path: str) -> list[Issue]:
    out: list[Issue] = []
    here = path or "(root)"
    wpre: list[Any] = w.get("prefixItems", [])
    rpre: list[Any] = r.get("prefixItems", [])
    w_rest, r_rest = w.get("items", True), r.get("items", True)
    longest = w.get("maxItems")
    reach = len(wpre)  # how far the writer's arrays can go, if bounded
    for i in range(max(len(wpre), len(rpre))):
        if longest is not None and i >= longest:
            reach = i
            break
        ws = wpre[i] if i < len(wpre) else w_rest
        if cx.writer.resolve(ws) is False:
            reach = i
            break
        rs = rpre[i] if i < len(rpre) else r_rest
        out += in_array(rules.compare(ws, rs, cx, f"{path}/{i}"), w, i, cx)
    else:
        reach = -1  # unbounded so far
        if longest is None or longest > max(len(wpre), len(rpre)):
            at = max(len(wpre), len(rpre))
            out += in_array(rules.compare(w_rest, r_rest, cx, f"{path}/*"), w, at, cx)
    if r.get("minItems", 0) > w.get("minItems", 0):
        out.append(_count(w, r, cx, here, "minItems"))
    if "maxItems" in r:
        most = w.get("maxItems", reach if reach >= 0 else None)
        if most is None or most > r["maxItems"]:
            out.append(_count(w, r, cx, here, "maxItems"))
    if r.get("uniqueItems") is True and not w.get("uniqueItems") and w.get("maxItems", 2) > 1:
        out.append(
            refuted(
                here,
                "the reader needs uniqueItems; the writer may repeat an item",
                w,
                {"uniqueItems": True},
                cx,
            )
        )
    if "contains" in r:
        out += _contains(w, r, cx, path)
    return out


def _count(w: dict[str, Any], r: dict[str, Any], cx: Context, here: str, key: str) -> Any:
    """A bound on the count: witnesses are writer arrays one past the reader's bound."""
    said = w.get(key, "any")
    n = r[key] + 1 if key == "maxItems" else r[key] - 1
    items = valid_examples(w.get("items", True), cx.writer, limit=max(n, 1) + 2)
    extra = [items[:n]] if len(items) >= n else []
    extra += [[item] * n for item in items[:3]]
    return refuted(
        here,
        f"the reader needs {key} {r[key]}; the writer allows {said}",
        w,
        {key: r[key]},
        cx,
        extra,
    )


def _contains(w: dict[str, Any], r: dict[str, Any], cx: Context, path: str) -> list[Issue]:
    here = path or "(root)"
    low, high = r.get("minContains", 1), r.get("maxContains")
    if canon(w.get("contains")) == canon(r["contains"]):
        # The same `contains`: only the counts can differ.
        out = []
        sample = first_valid(r["contains"], cx.reader)
        extra = [[sample[0]] * k for k in range(0, (high or low) + 2)] if sample else []
        if w.get("minContains", 1) < low:
            probe = {"contains": r["contains"], "minContains": low}
            out.append(
                refuted(
                    here,
                    f"the reader needs minContains {low}; "
                    f"the writer allows {w.get('minContains', 1)}",
                    w,
                    probe,
                    cx,
                    extra,
                )
            )
        if high is not None and not w.get("maxContains", high + 1) <= high:
            probe = {"contains": r["contains"], "maxContains": high}
            out.append(
                refuted(
                    here,
                    f"the reader needs maxContains {high}; "
                    f"the writer allows {w.get('maxContains', 'any')}",
                    w,
                    probe,
                    cx,
                    extra,
                )
            )
        return out
    if low != 1 or high is not None:
        return [Issue(UNDECIDABLE, here, "'minContains' / 'maxContains' with another 'contains'")]
    if "contains" in w and not rules.compare(
        w["contains"], r["contains"], cx, f"{path}/(contains)"
    ):
        return []
    every = not w.get("prefixItems") and not rules.compare(
        w.get("items", True), r["contains"], cx, f"{path}/*"
    )
    if every and w.get("minItems", 0) >= 1:
        return []
    probe = {"contains": r["contains"]}
    return [
        refuted(
            here,
            "the reader needs an item its 'contains' accepts; the writer may send none",
            w,
            probe,
            cx,
            [[]],
        )
    ]
