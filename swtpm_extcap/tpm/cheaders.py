"""C headers and sources of the TCG reference, read as data: object-like ``#define``s
evaluated as integers, and the bodies of the marshaling functions."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable


class ReferenceError_(Exception):
    """The reference files do not have the shape the readers expect."""


_DEFINE = re.compile(r"^\s*#\s*define\s+([A-Za-z_]\w*)(?!\()\s+(.+?)\s*$")
_TYPED = re.compile(r"^\(\s*([A-Za-z_]\w*)\s*\)\s*\((.*)\)$")
CAST = re.compile(r"\(\s*[A-Za-z_]\w*\s*\*?\s*\)(?=\s*[\w(])")
_FUNCTION = re.compile(r"\b([A-Za-z_]\w*?)_(Unmarshal|Marshal)\s*\(([^;{)]*\))\s*\{")
_SUFFIX = re.compile(r"\b(0[xX][0-9a-fA-F]+|\d+)[uUlL]+\b")


def _strip_comment(line: str) -> str:
    return re.sub(r"//.*$", "", re.sub(r"/\*.*?\*/", "", line)).rstrip()


class Macros:
    """Object-like ``#define``s of the headers, evaluated on demand."""

    def __init__(self) -> None:
        self.text: dict[str, str] = {}
        self.typed: list[tuple[str, str, str]] = []  # (type, name, expression), in file order
        self._cache: dict[str, int] = {}

    def read(self, source: str) -> None:
        for raw in source.splitlines():
            line = _strip_comment(raw)
            if line.endswith("\\"):
                continue
            match = _DEFINE.match(line)
            if not match:
                continue
            name, body = match.groups()
            self.text.setdefault(name, body)
            typed = _TYPED.match(body)
            if typed:
                self.typed.append((typed.group(1), name, typed.group(2)))

    def value(self, name: str) -> int:
        if name not in self._cache:
            if name not in self.text:
                raise KeyError(name)
            self._cache[name] = self.evaluate(self.text[name])
        return self._cache[name]

    def evaluate(self, expression: str) -> int:
        """A C integer expression of literals, these macros, casts and + - * / << >> | & ~."""
        text = _SUFFIX.sub(r"\1", CAST.sub("", expression)).replace("/", "//")
        return self._eval(ast.parse(text.strip(), mode="eval").body)

    def _eval(self, node: ast.expr) -> int:
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.Name):
            return self.value(node.id)
        if isinstance(node, ast.UnaryOp):
            operand = self._eval(node.operand)
            if isinstance(node.op, ast.USub):
                return -operand
            if isinstance(node.op, ast.Invert):
                return ~operand
            if isinstance(node.op, ast.UAdd):
                return operand
        if isinstance(node, ast.BinOp):
            left, right = self._eval(node.left), self._eval(node.right)
            op = node.op
            if isinstance(op, ast.Add):
                return left + right
            if isinstance(op, ast.Sub):
                return left - right
            if isinstance(op, ast.Mult):
                return left * right
            if isinstance(op, ast.FloorDiv):
                return left // right
            if isinstance(op, ast.LShift):
                return left << right
            if isinstance(op, ast.RShift):
                return left >> right
            if isinstance(op, ast.BitOr):
                return left | right
            if isinstance(op, ast.BitAnd):
                return left & right
        raise ValueError(f"not a constant expression: {ast.dump(node)}")


def balanced(text: str, start: int, open_: str, close: str) -> int:
    """The index just past the bracket that closes the one at ``start``."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == open_:
            depth += 1
        elif text[i] == close:
            depth -= 1
            if depth == 0:
                return i + 1
    raise ReferenceError_(f"unbalanced {open_} at {start}")


def split_args(text: str) -> list[str]:
    args: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in text:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        if ch == "," and depth == 0:
            args.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    args.append("".join(current).strip())
    return args


def read_functions(sources: Iterable[str]) -> dict[tuple[str, str], str]:
    """(type, "Unmarshal" | "Marshal") -> function body, first definition wins."""
    bodies: dict[tuple[str, str], str] = {}
    for source in sources:
        code = "\n".join(_strip_comment(line) for line in source.splitlines()
                         if not line.lstrip().startswith("#"))
        for match in _FUNCTION.finditer(code):
            end = balanced(code, match.end() - 1, "{", "}")
            bodies.setdefault((match.group(1), match.group(2)), code[match.end():end - 1])
    return bodies


