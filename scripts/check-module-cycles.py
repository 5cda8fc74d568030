#!/usr/bin/env python3
"""Fails when a module of a crate imports a module that (directly or through others) imports it.

Checked at every level: the top-level modules of a crate's `src/` and, inside each module, its sibling
submodules. A reference is any `crate::`, `super::` or `self::` path (in `use` trees and inline), resolved
to the module it names; `pub use` re-exports are followed to the module that defines the item. Code of
the crate's binaries (`main.rs`, `bin/`) is not part of the library's module tree and is skipped.

Usage: scripts/check-module-cycles.py [CRATE_SRC_DIR ...]   (default: src and every crates/*/src)
"""

import re
import sys
from pathlib import Path

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def strip_comments_and_strings(text: str) -> str:
    """Replaces comments, string and char literals with spaces (keeps line structure)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and (i == 0 or not re.match(r"[A-Za-z0-9_]", text[i - 1])):
            m = re.match(r'r(#*)"', text[i:])
            hashes = m.group(1)
            end = text.find('"' + hashes, i + len(m.group(0)))
            end = n if end < 0 else end + 1 + len(hashes)
            out.append(" " + "\n" * text.count("\n", i, end))
            i = end
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j + 1
        elif c == "'":
            m = re.match(r"'(\\.|\\u\{[0-9a-fA-F]+\}|\\x[0-9a-fA-F]{2}|[^\\'])'", text[i:])
            if m:
                out.append("' '")
                i += len(m.group(0))
            else:  # a lifetime
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def expand_use_tree(tree: str) -> list[str]:
    """`a::{b, c::{d, e as f}, self}` -> ['a::b', 'a::c::d', 'a::c::e', 'a']."""
    tree = re.sub(r"\s+", "", tree)
    results: list[str] = []

    def walk(prefix: str, s: str) -> None:
        depth, start, parts = 0, 0, []
        for k, ch in enumerate(s):
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif ch == "," and depth == 0:
                parts.append(s[start:k])
                start = k + 1
        parts.append(s[start:])
        for part in parts:
            if not part:
                continue
            brace = part.find("{")
            if brace >= 0:
                walk(prefix + part[:brace], part[brace + 1:part.rfind("}")])
            else:
                part = re.sub(r"as" + IDENT + "$", "", part) if re.search(r"[^:]as" + IDENT + "$", part) else part
                if part == "self":
                    results.append(prefix.rstrip(":"))
                elif part == "*":
                    results.append(prefix.rstrip(":"))
                else:
                    results.append(prefix + part)

    walk("", tree)
    return results


class Crate:
    def __init__(self, src: Path):
        self.src = src
        self.modules: set[tuple[str, ...]] = {()}
        self.files: dict[tuple[str, ...], Path] = {}
        # re-exports: (module, name) -> absolute path it points at
        self.reexports: dict[tuple[tuple[str, ...], str], tuple[str, ...]] = {}
        self.refs: list[tuple[tuple[str, ...], tuple[str, ...], str]] = []  # (from module, to path, where)
        for path in sorted(src.rglob("*.rs")):
            rel = path.relative_to(src)
            if rel.parts[0] in ("main.rs", "bin") or rel.name == "build.rs":
                continue
            parts = list(rel.with_suffix("").parts)
            if parts[-1] in ("mod", "lib"):
                parts.pop()
            module = tuple(parts)
            self.files[module] = path
            for k in range(len(module) + 1):
                self.modules.add(module[:k])
        for module, path in self.files.items():
            self.scan(module, path)

    def absolute(self, module: tuple[str, ...], path: str) -> tuple[str, ...] | None:
        segs = [s for s in path.split("::") if s]
        if not segs:
            return None
        if segs[0] == "crate":
            base: list[str] = []
            segs = segs[1:]
        elif segs[0] in ("super", "self"):
            base = list(module)
            while segs and segs[0] in ("super", "self"):
                if segs[0] == "super":
                    if not base:
                        return None
                    base.pop()
                segs = segs[1:]
        else:
            return None
        return tuple(base + segs)

    def scan(self, file_module: tuple[str, ...], path: Path) -> None:
        text = strip_comments_and_strings(path.read_text())
        # Inline `mod name { ... }` blocks: track which module each offset belongs to.
        stack: list[tuple[int, tuple[str, ...]]] = []  # (brace depth at open, module)
        depth = 0
        pending_mod: str | None = None
        tokens = re.finditer(r"(\bpub(\([^)]*\))?\s+)?\buse\s+([^;]+);|\bmod\s+(" + IDENT + r")\s*\{|[{}]|\b(?:crate|super|self)(?:::" + IDENT + r")+", text)
        for m in tokens:
            current = stack[-1][1] if stack else file_module
            tok = m.group(0)
            if m.group(4):
                inline = current + (m.group(4),)
                self.modules.add(inline)
                depth += 1
                stack.append((depth, inline))
                continue
            if tok == "{":
                depth += 1
                continue
            if tok == "}":
                if stack and stack[-1][0] == depth:
                    stack.pop()
                depth -= 1
                continue
            where = f"{path}:{text.count(chr(10), 0, m.start()) + 1}"
            if m.group(3) is not None:
                is_pub = m.group(1) is not None
                for item in expand_use_tree(m.group(3)):
                    target = self.absolute(current, item)
                    if target is None:
                        continue
                    self.refs.append((current, target, where))
                    if is_pub:
                        self.reexports[(current, target[-1] if target else "")] = target
            else:
                target = self.absolute(current, tok)
                if target is not None:
                    self.refs.append((current, target, where))

    def resolve(self, target: tuple[str, ...]) -> tuple[str, ...]:
        """The deepest module a path names, following `pub use` re-exports of the item after it."""
        for _ in range(16):
            k = len(target)
            while k > 0 and target[:k] not in self.modules:
                k -= 1
            module = target[:k]
            if k < len(target) and (module, target[k]) in self.reexports:
                nxt = self.reexports[(module, target[k])] + target[k + 1:]
                if nxt == target:
                    return module
                target = nxt
                continue
            return module
        return target

    def edges(self) -> dict[tuple[str, ...], dict[tuple[str, ...], str]]:
        """Sibling edges: parent -> {(child_a, child_b): where} for every reference across siblings."""
        graph: dict[tuple[str, ...], dict[tuple[str, ...], str]] = {}
        for source, target, where in self.refs:
            target = self.resolve(target)
            common = 0
            while common < min(len(source), len(target)) and source[common] == target[common]:
                common += 1
            if common == len(source) or common == len(target):
                continue  # a module using its own parent or its own child
            a, b = source[: common + 1], target[: common + 1]
            graph.setdefault(a, {}).setdefault(b, where)
        return graph


def cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def main() -> int:
    root = Path(__file__).resolve().parent.parent
    dirs = [Path(a) for a in sys.argv[1:]] or [root / "src", *sorted((root / "crates").glob("*/src"))]
    failed = False
    for src in dirs:
        crate = Crate(src)
        graph = crate.edges()
        for comp in cycles(graph):
            failed = True
            names = ["::".join(m) for m in comp]
            print(f"{src}: import cycle between {', '.join(names)}:")
            members = set(comp)
            for a in comp:
                for b, where in sorted(graph.get(a, {}).items()):
                    if b in members:
                        print(f"  {'::'.join(a)} -> {'::'.join(b)}  ({where})")
    if not failed:
        print(f"no import cycles in {len(dirs)} crate(s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
