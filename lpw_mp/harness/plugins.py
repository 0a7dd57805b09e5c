"""Strategies named on the command line: the built-in kernel profiles, and strategies from
outside the package, each given by a spec:

- ``path/to/file.py:ClassName``, a class in a file (its path is made absolute);
- ``package.module:ClassName``, a class in an importable module;
- a name an installed distribution declares in the entry-point group ``lpw_mp.strategies``.

This is the harness's module because it imports user code, which the kernel must not. Every
way a plugin can be unusable is a ``PluginError``, one line, found before any process starts:
the file or module, its import, the class, the attributes the tables and the CPUs read, the
hooks it must override, and its constructor, tried once on a throw-away machine.

A class loaded here is marked with its spec (``_lpw_mp_spec``) and with ``rebuild``: under
spawn, ``Strategy.__reduce_ex__`` pickles its instances as ``rebuild(spec)`` and their state,
so that a spawned child loads the class again from the spec (it could not import a file's
module by name)."""

import functools
import hashlib
import importlib
import importlib.metadata
import importlib.util
import multiprocessing
import os
import re
import sys

from lpw_mp.harness.config import ConfigError
from lpw_mp.kernel.cpu import WALKERS
from lpw_mp.kernel.machine import Machine
from lpw_mp.kernel.rcu import RCU
from lpw_mp.kernel.strategies import ALIASES, STRATEGIES, canonical
from lpw_mp.kernel.strategies.base import Strategy

#: The entry-point group an installed distribution declares its strategies in.
GROUP = "lpw_mp.strategies"
#: Names a plugin may not take: a leg, a table and ``all`` would not say which it is.
RESERVED = (*STRATEGIES, *ALIASES, "all")
#: The updater hook every path calls by default (the base class's raises
#: NotImplementedError), and the paths that call it: a plugin overrides the one or all these.
HOOK = "serialize_against_pte_lookup"
PATHS = ("zap_huge_pmd", "pmdp_invalidate", "pmdp_collapse_flush")
#: The machine a plugin's constructor is tried on: small, and of fork's objects, which are
#: unlinked at once and so cannot leak.
TRIAL_CPUS = 2
FORMS = ("path/to/file.py:ClassName, package.module:ClassName, or the name of an entry point "
         f"in group {GROUP}")


class PluginError(ConfigError):
    """A strategy that cannot be loaded or used: one line, exit status 2."""


# -- specs -----------------------------------------------------------------------------------

def parse_strategies(text: str) -> list:
    """``"ipi,count"``, ``"all"`` (every built-in profile, no alias, no plugin) or plugin specs,
    mixed, to a list of specs in the order given, without repeats (``resolve``); PluginError
    if one cannot be used."""
    names = [part.strip() for part in str(text).split(",") if part.strip()]
    if not names:
        raise PluginError("no strategy given")
    if "all" in names:
        _refuse_shadowing(["all"])
    specs = [n for name in names for n in (STRATEGIES if name == "all" else [name])]
    return list(dict.fromkeys(resolve(specs)))


def resolve(specs) -> list:
    """``specs`` as ``Config.strategies`` keeps them: a built-in's name with its alias resolved,
    a file's path made absolute, a module's or an entry point's as given; each loaded and
    checked. PluginError for one that cannot be used, for an entry point that takes a
    built-in's name, and for two strategies of one name."""
    for spec in specs:
        if not isinstance(spec, str) or not spec.strip():
            raise PluginError(f"strategy {spec!r} is not a name or a spec")
    specs = [spec.strip() for spec in specs]
    _refuse_shadowing(specs)
    out, by_name = [], {}
    for spec in map(canonical_spec, specs):
        name = strategy_class(spec).name
        if by_name.setdefault(name, spec) != spec:
            raise PluginError(f"strategies {by_name[name]} and {spec} have the same name "
                              f"{name!r}: a leg would not say which it is")
        out.append(spec)
    return out


def _refuse_shadowing(names) -> None:
    """PluginError if an installed entry point has a built-in's name (or alias, or ``all``)
    among ``names``: the user may have meant either."""
    reserved = {n for name in names for n in (name, canonical(name)) if n in RESERVED}
    if not reserved:
        return
    installed = _installed()
    clash = sorted(reserved & set(installed))
    if clash:
        raise PluginError(f"{_entry_point_text(installed[clash[0]][0])} takes the name of a "
                          f"built-in strategy: refused (rename the entry point)")


def canonical_spec(spec: str) -> str:
    """A built-in's name with its alias resolved, a file's spec with an absolute path (so that
    a later reader and a spawned child find it), any other as given."""
    name = canonical(spec)
    if name in STRATEGIES:
        return name
    target, colon, attr = spec.rpartition(":")
    return f"{os.path.abspath(target)}:{attr}" if colon and _is_file(target) else spec


def _is_file(target: str) -> bool:
    return target.endswith(".py") or os.sep in target or os.path.isfile(target)


def spec_of(strategy):
    """The spec a plugin's class (or instance) was loaded by; None for a built-in."""
    cls = strategy if isinstance(strategy, type) else type(strategy)
    return vars(cls).get("_lpw_mp_spec")


# -- loading ---------------------------------------------------------------------------------

def strategy_class(spec: str) -> type:
    """The class ``spec`` names: a built-in, or a plugin loaded and checked (once: a sweep
    validates its configuration at every point)."""
    name = canonical(spec)
    return STRATEGIES[name] if name in STRATEGIES else _checked(canonical_spec(spec))


@functools.cache
def _checked(spec: str) -> type:
    cls = _load(spec)
    _check(cls, spec)
    _mark(cls, spec)
    return cls


def rebuild(spec: str):
    """A plugin's instance without its state, which pickle sets next: what
    ``Strategy.__reduce_ex__`` pickles one as. In a spawned child the class is loaded again
    from ``spec`` (checked in the parent already)."""
    cls = _load(spec)
    _mark(cls, spec)
    return cls.__new__(cls)


def _mark(cls: type, spec: str) -> None:
    cls._lpw_mp_spec = spec
    cls._lpw_mp_rebuild = rebuild


def _load(spec: str) -> type:
    """The class ``spec`` names, imported and looked up: PluginError if there is none."""
    target, colon, attr = spec.rpartition(":")
    if not colon:
        # Not a file merely found in the current folder: an entry point may share its name.
        if spec.endswith(".py") or os.sep in spec:
            raise PluginError(f"strategy {spec}: a file needs the class too: write "
                              f"{spec}:ClassName")
        return _from_entry_point(spec)
    if not attr:
        raise PluginError(f"strategy {spec}: no class after ':'")
    module = _import_file(target, spec) if _is_file(target) else _import(target, spec)
    where = target if _is_file(target) else f"module {target}"
    return _class_in(module, attr, where, spec)


def _class_in(module, attr: str, where: str, spec: str) -> type:
    obj = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise PluginError(f"strategy {spec}: {where} has no class {attr}")
    if not isinstance(obj, type):
        raise PluginError(f"strategy {spec}: {attr} is not a class (it is of type "
                          f"{type(obj).__name__})")
    if not issubclass(obj, Strategy):
        raise PluginError(f"strategy {spec}: {attr} is not a subclass of "
                          f"{Strategy.__module__}.{Strategy.__qualname__}")
    return obj


def _import_file(path: str, spec: str):
    """The module of the file ``path``, run once per process under a name made from its path,
    the same in a spawned child (so that pickle finds the plugin's own classes there too)."""
    if not os.path.exists(path):
        raise PluginError(f"strategy {spec}: no such file {path}")
    if not path.endswith(".py") or not os.path.isfile(path):
        raise PluginError(f"strategy {spec}: {path} is not a .py file")
    stem = re.sub(r"\W", "_", os.path.basename(path)[:-3])
    name = f"_lpw_mp_plugin_{stem}_{hashlib.sha256(path.encode()).hexdigest()[:12]}"
    if name in sys.modules:
        return sys.modules[name]
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # as import does: a class's module must be findable by name
    try:
        module_spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        del sys.modules[name]
        raise _raised(spec, exc) from None
    return module


def _import(module: str, spec: str):
    if not all(part.isidentifier() for part in module.split(".")):
        raise PluginError(f"strategy {spec}: {module!r} is neither a module name nor a .py file")
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        # Its own import of a module that is missing is the plugin's failure, not a typo.
        if exc.name and (module + ".").startswith(exc.name + "."):
            raise PluginError(f"strategy {spec}: no module named {exc.name!r} (not on sys.path: "
                              f"PYTHONPATH adds a folder)") from None
        raise _raised(spec, exc) from None
    except (Exception, SystemExit) as exc:
        raise _raised(spec, exc) from None


def _raised(spec: str, exc: BaseException) -> PluginError:
    return PluginError(f"strategy {spec}: importing it raised {exception_text(exc)}")


def exception_text(exc: BaseException) -> str:
    """``ValueError: bad value``, on one line."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# -- entry points ----------------------------------------------------------------------------

def _installed() -> dict:
    """The group's entry points by name, from every distribution on ``sys.path``."""
    out = {}
    for ep in importlib.metadata.entry_points(group=GROUP):
        out.setdefault(ep.name, []).append(ep)
    return out


def _entry_point_text(ep) -> str:
    dist = getattr(ep, "dist", None)
    owner = f" of {dist.name} {dist.version}" if dist is not None else ""
    return f"entry point {ep.name} = {ep.value}{owner} in group {GROUP}"


def _from_entry_point(name: str) -> type:
    installed = _installed()
    found = installed.get(name, [])
    if not found:
        plugins = ", ".join(sorted(installed)) or "none installed"
        raise PluginError(
            f"unknown strategy {name!r} (choose from {', '.join(STRATEGIES)}, all; "
            f"{', '.join(f'{a} = {n}' for a, n in ALIASES.items())}; or a plugin: {FORMS} "
            f"({plugins}))")
    if len(found) > 1:
        raise PluginError(f"strategy {name}: declared more than once: "
                          f"{'; '.join(_entry_point_text(ep) for ep in found)}")
    ep = found[0]
    spec = f"{name} ({_entry_point_text(ep)})"
    if not ep.attr:
        raise PluginError(f"strategy {spec}: it names a module, not a class "
                          f"(write module:ClassName)")
    return _class_in(_import(ep.module, spec), ep.attr, f"module {ep.module}", spec)


# -- checks ----------------------------------------------------------------------------------

def _check(cls: type, spec: str) -> None:
    """What the tables, the CPUs and the coordinator read of a strategy, and its constructor."""
    def refuse(problem):
        raise PluginError(f"strategy {spec}: {problem}")

    what = cls.__qualname__
    name = getattr(cls, "name", None)
    if not isinstance(name, str):
        refuse(f"{what}.name {name!r} is not a string")
    if not name.strip():
        refuse(f"{what} has no name: give it a class attribute name, as a leg will show it")
    if name in RESERVED:
        whose = (f"the built-in strategy {name}'s" if name in STRATEGIES else
                 f"an alias of the built-in {ALIASES[name]}" if name in ALIASES else
                 "the word for every built-in")
        refuse(f"its name {name!r} is {whose}: give {what} a name of its own")
    if cls.walker not in WALKERS:
        refuse(f"its walker {cls.walker!r} is not one of {', '.join(WALKERS)}")
    for attr, kind in (("safe", bool), ("kernel", str)):
        if not isinstance(getattr(cls, attr), kind):
            refuse(f"{what}.{attr} {getattr(cls, attr)!r} is not a {kind.__name__}")
    missing = _missing_hooks(cls)
    if missing:
        refuse(f"{what} overrides neither {HOOK} (the base class's raises "
               f"NotImplementedError) nor every path that calls it: it lacks "
               f"{', '.join(missing)}")
    ctx = multiprocessing.get_context("fork")
    try:
        trial = cls(ctx, Machine(ctx, TRIAL_CPUS))
    except (Exception, SystemExit) as exc:
        refuse(f"{what}(ctx, machine) raised {exception_text(exc)} (tried on a "
               f"{TRIAL_CPUS}-CPU machine)")
    if not isinstance(getattr(trial, "rcu", None), RCU):
        refuse(f"{what}.__init__ does not call Strategy.__init__(self, ctx, machine), which "
               f"gives it the RCU that every CPU and the coordinator use")


def _missing_hooks(cls: type) -> list:
    """The paths ``cls`` leaves to the base class's ``serialize_against_pte_lookup``, which
    raises: none if it overrides that."""
    def overrides(method):
        return getattr(cls, method) is not getattr(Strategy, method)
    return [] if overrides(HOOK) else [path for path in PATHS if not overrides(path)]
