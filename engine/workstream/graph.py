"""Graph algorithms over step dependencies, linear in steps + edges.

`deps[v]` lists what `v` waits for; an edge `u → v` means "u before v". Everything works on
integer indices internally so a 10,000-step workstream costs milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from stepledger.engine.errors import UserInputError

ARROW = " → "


class CycleError(UserInputError):
    """The dependencies form a cycle; remove one `depends_on` entry of the cycle shown."""

    def __init__(self, cycle: Sequence[str]) -> None:
        self.cycle = tuple(cycle)
        super().__init__(f"dependency cycle: {format_cycle(cycle)}")


def format_cycle(cycle: Sequence[str]) -> str:
    """`a → b → a` for the cycle [a, b, a]."""
    return ARROW.join(cycle)


def _indexed(nodes: Sequence[str], deps: Mapping[str, Sequence[str]]) -> list[list[int]]:
    """Predecessor lists by index; dependencies on unknown nodes are ignored (reported elsewhere)."""
    index = {node: i for i, node in enumerate(nodes)}
    return [[index[d] for d in deps.get(node, ()) if d in index] for node in nodes]


def successors(preds: Sequence[Sequence[int]]) -> list[list[int]]:
    """Invert predecessor lists into successor lists."""
    succ: list[list[int]] = [[] for _ in preds]
    for v, ps in enumerate(preds):
        for u in ps:
            succ[u].append(v)
    return succ


def topo_indices(preds: Sequence[Sequence[int]]) -> list[int] | None:
    """Kahn's order (ties in index order), or None when there is a cycle."""
    succ = successors(preds)
    indegree = [len(ps) for ps in preds]
    order = [v for v, d in enumerate(indegree) if d == 0]
    for v in order:  # `order` grows while we walk it: a queue without deque overhead
        for w in succ[v]:
            indegree[w] -= 1
            if indegree[w] == 0:
                order.append(w)
    return order if len(order) == len(preds) else None


def topological_order(nodes: Sequence[str], deps: Mapping[str, Sequence[str]]) -> list[str]:
    """Nodes so that each comes after everything it depends on; CycleError if impossible."""
    preds = _indexed(nodes, deps)
    order = topo_indices(preds)
    if order is None:
        cycles = cycle_indices(preds)
        raise CycleError([nodes[i] for i in cycles[0]])
    return [nodes[i] for i in order]


def _strong_components(succ: Sequence[Sequence[int]]) -> list[list[int]]:
    """Tarjan's strongly connected components, iteratively (no recursion limit on long chains)."""
    n = len(succ)
    index = [-1] * n
    low = [0] * n
    on_stack = [False] * n
    stack: list[int] = []
    components: list[list[int]] = []
    counter = 0
    for root in range(n):
        if index[root] != -1:
            continue
        work = [(root, 0)]
        while work:
            v, i = work[-1]
            if i == 0:
                index[v] = low[v] = counter
                counter += 1
                stack.append(v)
                on_stack[v] = True
            if i < len(succ[v]):
                work[-1] = (v, i + 1)
                w = succ[v][i]
                if index[w] == -1:
                    work.append((w, 0))
                elif on_stack[w]:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
            if low[v] == index[v]:
                component: list[int] = []
                while True:
                    w = stack.pop()
                    on_stack[w] = False
                    component.append(w)
                    if w == v:
                        break
                components.append(component)
    return components


def _cycle_in(component: list[int], succ: Sequence[Sequence[int]]) -> list[int]:
    """A simple cycle inside one strongly connected component, as [a, b, ..., a]."""
    members = set(component)
    start = min(component)
    seen_at: dict[int, int] = {}
    path: list[int] = []
    v = start
    # Inside a strong component every node has a successor in it, so this walk must revisit a node.
    while v not in seen_at:
        seen_at[v] = len(path)
        path.append(v)
        v = min(w for w in succ[v] if w in members)
    return [*path[seen_at[v] :], v]


def acyclic_part(preds: Sequence[Sequence[int]]) -> tuple[list[list[int]], list[list[int]]]:
    """Predecessors without the edges inside cycles, and the cyclic components (for checks that go on)."""
    components = [c for c in _strong_components(successors(preds)) if len(c) > 1]
    component_of = {v: k for k, c in enumerate(components) for v in c}
    kept = [
        [u for u in ps if u != v and (v not in component_of or component_of.get(u) != component_of[v])]
        for v, ps in enumerate(preds)
    ]
    return kept, components


def cycle_indices(preds: Sequence[Sequence[int]]) -> list[list[int]]:
    """One cycle per strongly connected component that has one (self-loops included)."""
    succ = successors(preds)
    cycles = []
    for component in _strong_components(succ):
        if len(component) > 1 or component[0] in succ[component[0]]:
            cycles.append(_cycle_in(component, succ))
    cycles.sort(key=min)
    return cycles


def find_cycles(nodes: Sequence[str], deps: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Every independent cycle (one per strongly connected component), each as [a, b, ..., a]."""
    return [[nodes[i] for i in cycle] for cycle in cycle_indices(_indexed(nodes, deps))]


def find_cycle(nodes: Sequence[str], deps: Mapping[str, Sequence[str]]) -> list[str] | None:
    """One dependency cycle as [a, b, ..., a] in edge direction, or None when the graph is a DAG."""
    cycles = find_cycles(nodes, deps)
    return cycles[0] if cycles else None


def concurrent_pairs(
    preds: Sequence[Sequence[int]],
    order: Sequence[int],
    buckets: Sequence[Sequence[int]],
    never_together: Sequence[Sequence[int]] = (),
    limit: int = 20,
) -> Iterator[tuple[int, list[tuple[int, int]], int]]:
    """Per bucket, pairs with no dependency path between them: (bucket, first `limit` pairs, total).

    Only nodes that share a bucket get a bit, so the ancestor bitsets cost O((n + e) · k / 64) for
    k such nodes, and a bucket of m nodes costs O(m) bitset operations plus the pairs listed.
    `never_together` lists node sets that cannot run concurrently anyway (sequential groups).
    """
    bit: dict[int, int] = {}
    for bucket in buckets:
        for v in bucket:
            bit.setdefault(v, 1 << len(bit))
    if not bit:
        return
    ancestors = [0] * len(preds)
    for v in order:
        acc = 0
        for u in preds[v]:
            acc |= ancestors[u] | bit.get(u, 0)
        ancestors[v] = acc
    exclusive = [0] * len(preds)
    for group in never_together:
        mask = 0
        for v in group:
            mask |= bit.get(v, 0)
        for v in group:
            exclusive[v] |= mask
    position = {v: i for i, v in enumerate(order)}
    by_bit = {b.bit_length() - 1: v for v, b in bit.items()}
    for b_index, bucket in enumerate(buckets):
        earlier, total = 0, 0
        pairs: list[tuple[int, int]] = []
        for v in sorted(bucket, key=position.__getitem__):
            clash = earlier & ~ancestors[v] & ~exclusive[v]
            total += clash.bit_count()
            while clash and len(pairs) < limit:
                low = clash & -clash
                pairs.append((by_bit[low.bit_length() - 1], v))
                clash ^= low
            earlier |= bit[v]
        if total:
            yield b_index, pairs, total
