"""A Python function as the code of a function: its own source (dedented,
decorators removed) in a zip, with requirements.txt, as the gateway's
build route takes it (tinyFaaS's upload body)."""

import ast
import importlib.util
import inspect
import io
import textwrap
import zipfile

# Names the python template's runner reads as other platforms' shapes.
OTHER_SHAPES = {
    "handle": "OpenFaaS's handle(event, context)",
    "fn": "tinyFaaS's fn(input, headers)",
}
# Fixed entry times, so the same source makes the same zip (and the
# gateway, which keys builds by the source's digest, builds it once).
ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def function_name(fn):
    """The deployed name a Python function gets by default: its own name
    with ``_`` as ``-`` (``hello_world`` → ``hello-world``)."""
    return original(fn).__name__.replace("_", "-")


def original(fn):
    """The plain Python function behind ``fn`` (a Function object or a
    function); a ValueError naming the problem for anything else."""
    fn = getattr(fn, "fn", None) or fn
    if inspect.isbuiltin(fn) or inspect.ismethoddescriptor(fn):
        raise ValueError(
            f"{fn!r} is built in: it has no Python source to deploy; "
            "wrap it in a function defined with def"
        )
    if not inspect.isfunction(fn):
        raise ValueError(
            f"{fn!r} is not a Python function: deploy a function defined with def "
            "(request, context)"
        )
    if fn.__name__ == "<lambda>":
        raise ValueError(
            "a lambda cannot be deployed (it has no name, and its source is part of "
            "another statement): define it with def name(request, context)"
        )
    return fn


def source(fn):
    """The source of ``fn``, dedented, without its decorators.

    >>> def hello(request, context):
    ...     return {"message": "Hello " + request["name"]}
    >>> print(source(hello))  # doctest: +SKIP
    def hello(request, context):
        return {"message": "Hello " + request["name"]}
    """
    fn = original(fn)
    name = fn.__name__
    if name in OTHER_SHAPES:
        raise ValueError(
            f"a function named {name} is run as {OTHER_SHAPES[name]}, not as "
            "FaaSET's f(request, context): give it another name"
        )
    try:
        inspect.signature(fn).bind(None, None)
    except TypeError:
        raise ValueError(
            f"{name}{inspect.signature(fn)} cannot take (request, context): "
            "the function is called with the JSON object sent and a context"
        ) from None
    if fn.__code__.co_freevars:
        raise ValueError(
            f"{name} uses {', '.join(fn.__code__.co_freevars)} from the function it is "
            "defined in, which is not deployed with it: pass it in the request, or "
            f"define {name} at the top level"
        )
    try:
        text = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError) as e:
        raise ValueError(
            f"cannot read the source of {name} ({e}): define it in a file or a "
            "notebook cell, not at the interactive prompt"
        ) from None
    tree = ast.parse(text)
    node = tree.body[0]
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        raise ValueError(f"the source of {name} does not start with its def")
    # The def line itself; the decorators above it are the client's, not the
    # function's.
    lines = text.splitlines(keepends=True)[node.lineno - 1 :]
    return "".join(lines).rstrip() + "\n"


def file_name(fn):
    """The file the source goes in: the function's name, unless that would
    hide a module of the same name from the function's own imports
    (``def json(...)``): then ``<name>_fn.py``."""
    name = original(fn).__name__
    try:
        taken = importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        taken = True
    return f"{name}_fn.py" if taken else f"{name}.py"


def requirements_text(requirements):
    """requirements.txt's text from a list of pip specifications or a
    string; ``None`` when there are none."""
    if requirements is None:
        return None
    if isinstance(requirements, str):
        text = requirements
    else:
        specs = [str(r).strip() for r in requirements]
        text = "\n".join(s for s in specs if s)
    text = text.strip()
    return text + "\n" if text else None


def package(fn, requirements=None):
    """``(file, zip bytes)``: the zip holds ``file`` (the function's
    source) and requirements.txt when there are requirements."""
    name = file_name(fn)
    files = {name: source(fn)}
    reqs = requirements_text(requirements)
    if reqs is not None:
        files["requirements.txt"] = reqs
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, text in files.items():
            entry = zipfile.ZipInfo(path, ZIP_TIME)
            entry.external_attr = 0o100644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, text)
    return name, buffer.getvalue()
