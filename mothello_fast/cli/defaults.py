"""The commands' defaults, taken from the Python API they call, never written twice.

Building the parser must not import torch (``mothello gen`` never does), so the defaults
are read from the API's source rather than from the imported functions: `api_defaults`
parses the module with `ast` and evaluates each keyword default that is a constant
expression (``256``, ``1e-3``, ``1 << 16``, a module-level constant of such a value).
"""
from __future__ import annotations

import ast
import functools
import importlib.util

__all__ = ["api_defaults"]


@functools.lru_cache(maxsize=None)
def _module(name: str) -> ast.Module:
    spec = importlib.util.find_spec(name)
    with open(spec.origin, encoding="utf-8") as f:
        return ast.parse(f.read())


def _constant(node: ast.AST, names: dict):
    """The value of a constant expression, or a `ValueError`."""
    if isinstance(node, ast.Name) and node.id in names:
        return names[node.id]
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.LShift, ast.Mult, ast.Add,
                                                            ast.Pow, ast.Sub)):
        left, right = _constant(node.left, names), _constant(node.right, names)
        return {ast.LShift: lambda a, b: a << b, ast.Mult: lambda a, b: a * b,
                ast.Add: lambda a, b: a + b, ast.Pow: lambda a, b: a ** b,
                ast.Sub: lambda a, b: a - b}[type(node.op)](left, right)
    return ast.literal_eval(node)


def api_defaults(module: str, qualname: str) -> dict:
    """``{parameter: default}`` of the function `qualname` (``"collect_parallel"``,
    ``"MLPProbe.__init__"``) of `module` (``"mothello_fast.activations"``), for the
    defaults that are constant expressions; a class's ``__init__`` includes its bases'
    (within the module) for the keywords it passes on with ``**kwargs``."""
    tree = _module(module)
    names = {}
    for node in tree.body:   # module-level constants: NAME = <constant>
        if isinstance(node, ast.Assign) and len(node.targets) == 1 \
                and isinstance(node.targets[0], ast.Name):
            try:
                names[node.targets[0].id] = _constant(node.value, names)
            except ValueError:
                pass
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}

    def of_function(node: ast.FunctionDef) -> dict:
        args = node.args
        pairs = list(zip(args.args[len(args.args) - len(args.defaults):], args.defaults))
        pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
        out = {}
        for arg, default in pairs:
            try:
                out[arg.arg] = _constant(default, names)
            except ValueError:
                pass
        return out

    def of_class(node: ast.ClassDef, method: str) -> dict:
        out = {}
        for base in node.bases:   # the bases' first: the class's own defaults win
            if isinstance(base, ast.Name) and base.id in classes:
                out.update(of_class(classes[base.id], method))
        for item in node.body:
            if isinstance(item, ast.FunctionDef) and item.name == method:
                out.update(of_function(item))
        return out

    owner, _, method = qualname.partition(".")
    if method:
        return of_class(classes[owner], method)
    return of_function(functions[owner])
