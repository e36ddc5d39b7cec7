"""A pickle machine for untrusted weight files: data opcodes only, allow-listed calls, no shared state.

`pickle.Unpickler` with a restricted `find_class` still lets a file run BUILD (`__setstate__` or
`__dict__.update`), SETITEM or APPEND on any object it can name, including the allowed globals themselves,
which every later load shares: one hostile file could rewrite them and poison every genuine file read
afterwards in the same process. This module interprets the pickle itself instead. Its rules:

- Globals: GLOBAL/STACK_GLOBAL resolve only through the `allowed` table given for one load (the caller
  builds fresh stand-ins per load). Anything else raises WeightFormatError naming module.name.
- Calls: REDUCE calls only the values listed in `callables`, with a tuple of arguments. INST, OBJ,
  NEWOBJ, NEWOBJ_EX (class instantiation), EXT1/2/4 (the copyreg registry) and out-of-band buffers are
  refused: no weight file needs them.
- Mutation: BUILD, SETITEM(S), APPEND(S) and ADDITEMS act only on objects this load created (its own
  containers and the results of its own calls), and BUILD only on the types given in `build`. Setting
  state on an allowed global or a stand-in is refused.
- Bounds: every length a file claims (strings, bytes, frames, integers, text lines) is checked against the
  bytes left in the file before anything is read or allocated; `Budget` caps the bytes of data one load may
  create (`limits.MAX_LOAD_BYTES`).

Any malformed input raises WeightFormatError naming the file, never another exception.
"""

from __future__ import annotations

import codecs
import collections
import contextlib
import io
import os
import pickle
import struct
from typing import Any, Callable, Iterable, Mapping, Optional

import numpy as np

from emonet_tf.weights import limits
from emonet_tf.weights.errors import WeightFormatError

#: Longest line a text opcode (INT, LONG, FLOAT, GET, PUT, GLOBAL, STRING, UNICODE, PERSID) may have.
MAX_PICKLE_LINE = 4096
#: Longest integer LONG1/LONG4 may carry, in bytes (no weight file needs more than 8).
MAX_LONG_BYTES = 64
_PLAIN = (str, bytes, int, float, bool, type(None))


class Budget:
    """Counts the bytes of data one load creates; raises WeightFormatError past `limit` (MAX_LOAD_BYTES)."""

    def __init__(self, source: str, limit: int = limits.MAX_LOAD_BYTES):
        self.source, self.limit, self.used = source, int(limit), 0

    def charge(self, nbytes: int, what: str) -> None:
        if nbytes < 0 or self.used + nbytes > self.limit:
            raise WeightFormatError(
                f"{self.source}: {what} needs {nbytes} bytes, which with the {self.used} "
                f"already read exceeds the bound of {self.limit} bytes per load "
                "(emonet_tf.weights.limits.MAX_LOAD_BYTES); refused before allocating"
            )
        self.used += nbytes


class BoundedReader:
    """A binary stream of known length: reads past its end are refused before the buffer is allocated."""

    def __init__(self, stream, end: int, source: str):
        self._f, self._end, self.source = stream, int(end), source

    @classmethod
    def of_bytes(cls, data: bytes, source: str) -> "BoundedReader":
        return cls(io.BytesIO(data), len(data), source)

    @classmethod
    def of_file(cls, f, source: str) -> "BoundedReader":
        return cls(f, os.fstat(f.fileno()).st_size, source)

    def remaining(self) -> int:
        return self._end - self._f.tell()

    def check(self, n: int, what: str = "data") -> None:
        """Refuses a claimed length `n` that goes past the end of the stream."""
        if n < 0 or n > self.remaining():
            raise WeightFormatError(
                f"{self.source}: {what} claims {n} bytes but only {max(self.remaining(), 0)} "
                "are left in the file (truncated or forged length)"
            )

    def read(self, n: int, what: str = "data") -> bytes:
        if n < 0 or n > self.remaining():
            raise WeightFormatError(
                f"{self.source}: {what} claims {n} bytes but only {max(self.remaining(), 0)} "
                "are left in the file (truncated or forged length)"
            )
        data = self._f.read(n)
        if len(data) != n:
            raise WeightFormatError(f"{self.source}: file ended inside {what} (truncated)")
        return data

    def readline(self, limit: int = MAX_PICKLE_LINE) -> bytes:
        line = self._f.readline(limit + 1)
        if not line.endswith(b"\n"):
            if len(line) > limit:
                raise WeightFormatError(f"{self.source}: a pickle text line longer than {limit} bytes")
            raise WeightFormatError(f"{self.source}: file ended inside a pickle text line (truncated)")
        return line[:-1]


def plain_key(key: Any, source: str, depth: int = 0) -> Any:
    """Refuses dict keys / set items other than str, bytes, numbers, None and tuples of them (no __hash__ calls)."""
    if isinstance(key, _PLAIN) and type(key) in _PLAIN:
        return key
    if type(key) is tuple and depth < 4:
        for k in key:
            plain_key(k, source, depth + 1)
        return key
    raise WeightFormatError(
        f"{source}: a dict key or set item of type {type(key).__name__}; only strings, "
        "numbers and tuples of them are accepted"
    )


def _ops(*names: str) -> dict[int, str]:
    return {getattr(pickle, n)[0]: n for n in names}


_REFUSED = _ops("INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "EXT1", "EXT2", "EXT4", "NEXT_BUFFER", "READONLY_BUFFER")


class SafeUnpickler:
    """Interprets one pickle from `reader` under the rules of the module docstring.

    allowed: (module, name) -> the object GLOBAL/STACK_GLOBAL yield, built fresh for this load by the caller.
    callables: the objects among those that REDUCE may call (identity), e.g. the tensor-rebuild functions.
    build: exact type -> handler(obj, state) for BUILD on objects this load created (e.g. ndarray state).
    persistent_load: handler of BINPERSID/PERSID ids (torch storages); None refuses persistent ids.
    encoding: how Python 2 str (STRING, BINSTRING, SHORT_BINSTRING) are decoded ('bytes' keeps bytes).
    budget: the Budget charged for every string/bytes the pickle holds.
    """

    def __init__(
        self,
        reader: BoundedReader,
        source: str,
        allowed: Mapping[tuple[str, str], Any],
        callables: Iterable[Any] = (),
        build: Optional[Mapping[type, Callable[[Any, Any], None]]] = None,
        persistent_load: Optional[Callable[[Any], Any]] = None,
        encoding: str = "utf-8",
        budget: Optional[Budget] = None,
    ):
        self._r, self._source = reader, source
        self._allowed = dict(allowed)
        self._callables = {id(c): c for c in callables}
        self._build = dict(build or {})
        self._persistent = persistent_load
        self._encoding = encoding
        self._budget = budget if budget is not None else Budget(source)
        self._own: dict[int, Any] = {}  # objects this load created: id -> object (kept alive while loading)

    # ------------------------------------------------------------------------------------------------
    def _refuse(self, message: str) -> WeightFormatError:
        return WeightFormatError(f"{self._source}: refusing to load: {message}; nothing was loaded")

    def _mine(self, obj: Any) -> Any:
        self._own[id(obj)] = obj
        return obj

    def _owned(self, obj: Any, action: str) -> Any:
        if self._own.get(id(obj)) is not obj:
            raise self._refuse(
                f"the pickle applies {action} to a {type(obj).__name__} it did not create "
                "(an allowed global or a shared object)"
            )
        return obj

    def _find(self, module: Any, name: Any) -> Any:
        if not (isinstance(module, str) and isinstance(name, str)):
            raise self._refuse("STACK_GLOBAL with a module or name that is not a string")
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise self._refuse(
                f"the pickle references {module[:80]}.{name[:80]}, which is not an allowed "
                "tensor, array, storage or container constructor (such a global can run code "
                "on load)"
            ) from None

    def _text(self, data: bytes) -> Any:
        if self._encoding == "bytes":
            return data
        return data.decode(self._encoding, "strict")

    def _sized(self, n: int, what: str) -> bytes:
        self._r.check(n, what)
        self._budget.charge(n, what)
        return self._r.read(n, what)

    def _call(self, func: Any, args: Any) -> Any:
        if self._callables.get(id(func)) is not func:
            raise self._refuse(f"REDUCE calls a {type(func).__name__} that is not an allowed constructor")
        if type(args) is not tuple:
            raise self._refuse("REDUCE with arguments that are not a tuple")
        with self._named():
            return self._mine(func(*args))

    @contextlib.contextmanager
    def _named(self):
        """Prefixes the file name to a WeightFormatError raised by an allowed constructor or BUILD handler."""
        try:
            yield
        except WeightFormatError as err:
            if str(err).startswith(f"{self._source}: "):
                raise
            raise WeightFormatError(f"{self._source}: {err}") from None

    # ------------------------------------------------------------------------------------------------
    def load(self) -> Any:
        """Runs the pickle to its STOP and returns the object; WeightFormatError for anything refused or broken."""
        try:
            return self._load()
        except WeightFormatError:
            raise
        except RecursionError:
            raise WeightFormatError(f"{self._source}: corrupt pickle (nested too deeply)") from None
        except (
            pickle.UnpicklingError,
            ValueError,
            TypeError,
            KeyError,
            IndexError,
            AttributeError,
            OverflowError,
            MemoryError,
            struct.error,
            UnicodeError,
            EOFError,
            OSError,
        ) as err:
            raise WeightFormatError(
                f"{self._source}: corrupt pickle ({type(err).__name__}: {str(err)[:200]})"
            ) from None

    def _load(self) -> Any:  # noqa: C901 - one branch per opcode, as pickle.py
        r = self._r
        stack: list = []
        metastack: list = []
        memo: dict = {}

        def pop_mark() -> list:
            nonlocal stack
            if not metastack:
                raise pickle.UnpicklingError("MARK expected")
            items, stack = stack, metastack.pop()
            return items

        def top() -> Any:
            if not stack:
                raise pickle.UnpicklingError("stack underflow")
            return stack[-1]

        def pop() -> Any:
            if not stack:
                raise pickle.UnpicklingError("stack underflow")
            return stack.pop()

        def intline(line: bytes) -> int:
            return int(line.rstrip(b"L"), 10)

        while True:
            op_byte = r.read(1, "an opcode") if r.remaining() > 0 else b""
            if not op_byte:
                raise WeightFormatError(f"{self._source}: the pickle ends without STOP (truncated file)")
            op = op_byte[0]
            if op in _REFUSED:
                raise self._refuse(
                    f"the pickle uses {_REFUSED[op]}, which instantiates classes or calls code "
                    "through a registry; no weight file needs it"
                )
            if op == pickle.STOP[0]:
                if metastack:
                    raise pickle.UnpicklingError("STOP inside MARK")
                return pop()
            if op == pickle.PROTO[0]:
                proto = r.read(1)[0]
                if proto > pickle.HIGHEST_PROTOCOL:
                    raise pickle.UnpicklingError(f"unsupported pickle protocol {proto}")
            elif op == pickle.FRAME[0]:
                (n,) = struct.unpack("<Q", r.read(8))
                if n > r.remaining():
                    raise WeightFormatError(
                        f"{self._source}: a pickle frame claims {n} bytes but only "
                        f"{r.remaining()} are left (truncated or forged length)"
                    )
            elif op == pickle.MARK[0]:
                metastack.append(stack)
                stack = []
            elif op == pickle.POP[0]:
                if stack:
                    stack.pop()
                else:
                    pop_mark()
            elif op == pickle.POP_MARK[0]:
                pop_mark()
            elif op == pickle.DUP[0]:
                stack.append(top())
            # ---- constants
            elif op == pickle.NONE[0]:
                stack.append(None)
            elif op == pickle.NEWTRUE[0]:
                stack.append(True)
            elif op == pickle.NEWFALSE[0]:
                stack.append(False)
            elif op == pickle.INT[0]:
                line = r.readline()
                stack.append(False if line == b"00" else True if line == b"01" else int(line, 10))
            elif op == pickle.BININT[0]:
                stack.append(struct.unpack("<i", r.read(4))[0])
            elif op == pickle.BININT1[0]:
                stack.append(r.read(1)[0])
            elif op == pickle.BININT2[0]:
                stack.append(struct.unpack("<H", r.read(2))[0])
            elif op == pickle.LONG[0]:
                stack.append(intline(r.readline()))
            elif op in (pickle.LONG1[0], pickle.LONG4[0]):
                n = r.read(1)[0] if op == pickle.LONG1[0] else struct.unpack("<i", r.read(4))[0]
                if n < 0 or n > MAX_LONG_BYTES:
                    raise WeightFormatError(
                        f"{self._source}: a pickled integer of {n} bytes (at most {MAX_LONG_BYTES} accepted)"
                    )
                stack.append(int.from_bytes(r.read(n), "little", signed=True))
            elif op == pickle.FLOAT[0]:
                stack.append(float(r.readline()))
            elif op == pickle.BINFLOAT[0]:
                stack.append(struct.unpack(">d", r.read(8))[0])
            # ---- strings and bytes (every length checked against the file before reading)
            elif op == pickle.STRING[0]:
                line = r.readline()
                if len(line) < 2 or line[:1] not in (b'"', b"'") or line[-1:] != line[:1]:
                    raise pickle.UnpicklingError("the STRING opcode argument must be quoted")
                stack.append(self._text(codecs.escape_decode(line[1:-1])[0]))
            elif op == pickle.BINSTRING[0]:
                (n,) = struct.unpack("<i", r.read(4))
                stack.append(self._text(self._sized(n, "a pickled string")))
            elif op == pickle.SHORT_BINSTRING[0]:
                stack.append(self._text(r.read(r.read(1)[0])))
            elif op == pickle.UNICODE[0]:
                stack.append(r.readline().decode("raw-unicode-escape"))
            elif op in (pickle.BINUNICODE[0], pickle.BINUNICODE8[0], pickle.SHORT_BINUNICODE[0]):
                fmt = {pickle.BINUNICODE[0]: "<I", pickle.BINUNICODE8[0]: "<Q", pickle.SHORT_BINUNICODE[0]: "<B"}[op]
                (n,) = struct.unpack(fmt, r.read(struct.calcsize(fmt)))
                stack.append(self._sized(n, "a pickled string").decode("utf-8", "surrogatepass"))
            elif op in (pickle.BINBYTES[0], pickle.BINBYTES8[0], pickle.SHORT_BINBYTES[0], pickle.BYTEARRAY8[0]):
                fmt = {
                    pickle.BINBYTES[0]: "<I",
                    pickle.BINBYTES8[0]: "<Q",
                    pickle.SHORT_BINBYTES[0]: "<B",
                    pickle.BYTEARRAY8[0]: "<Q",
                }[op]
                (n,) = struct.unpack(fmt, r.read(struct.calcsize(fmt)))
                data = self._sized(n, "a pickled bytes object")
                stack.append(self._mine(bytearray(data)) if op == pickle.BYTEARRAY8[0] else data)
            # ---- containers (all created here, so this load owns them)
            elif op == pickle.EMPTY_TUPLE[0]:
                stack.append(())
            elif op in (pickle.TUPLE1[0], pickle.TUPLE2[0], pickle.TUPLE3[0]):
                n = {pickle.TUPLE1[0]: 1, pickle.TUPLE2[0]: 2, pickle.TUPLE3[0]: 3}[op]
                if len(stack) < n:
                    raise pickle.UnpicklingError("stack underflow")
                items = tuple(stack[-n:])
                del stack[-n:]
                stack.append(items)
            elif op == pickle.TUPLE[0]:
                items = tuple(pop_mark())  # pop_mark rebinds `stack`: evaluate it before `stack.append`
                stack.append(items)
            elif op == pickle.EMPTY_LIST[0]:
                stack.append(self._mine([]))
            elif op == pickle.LIST[0]:
                items = pop_mark()
                stack.append(self._mine(items))
            elif op == pickle.EMPTY_DICT[0]:
                stack.append(self._mine({}))
            elif op == pickle.DICT[0]:
                items = pop_mark()
                if len(items) % 2:
                    raise pickle.UnpicklingError("odd number of items for DICT")
                stack.append(
                    self._mine({plain_key(items[i], self._source): items[i + 1] for i in range(0, len(items), 2)})
                )
            elif op == pickle.EMPTY_SET[0]:
                stack.append(self._mine(set()))
            elif op == pickle.FROZENSET[0]:
                items = pop_mark()
                stack.append(frozenset(plain_key(k, self._source) for k in items))
            elif op == pickle.APPEND[0]:
                value = pop()
                self._append(top(), [value])
            elif op == pickle.APPENDS[0]:
                items = pop_mark()
                self._append(top(), items)
            elif op == pickle.SETITEM[0]:
                value, key = pop(), pop()
                self._setitems(top(), [key, value])
            elif op == pickle.SETITEMS[0]:
                items = pop_mark()
                self._setitems(top(), items)
            elif op == pickle.ADDITEMS[0]:
                items = pop_mark()
                target = self._owned(top(), "ADDITEMS")
                if type(target) is not set:
                    raise self._refuse(f"ADDITEMS on a {type(target).__name__}")
                target.update(plain_key(k, self._source) for k in items)
            # ---- memo
            elif op in (pickle.PUT[0], pickle.BINPUT[0], pickle.LONG_BINPUT[0]):
                idx = (
                    intline(r.readline())
                    if op == pickle.PUT[0]
                    else r.read(1)[0]
                    if op == pickle.BINPUT[0]
                    else struct.unpack("<I", r.read(4))[0]
                )
                if idx < 0:
                    raise pickle.UnpicklingError("negative PUT argument")
                memo[idx] = top()
            elif op == pickle.MEMOIZE[0]:
                memo[len(memo)] = top()
            elif op in (pickle.GET[0], pickle.BINGET[0], pickle.LONG_BINGET[0]):
                idx = (
                    intline(r.readline())
                    if op == pickle.GET[0]
                    else r.read(1)[0]
                    if op == pickle.BINGET[0]
                    else struct.unpack("<I", r.read(4))[0]
                )
                if idx not in memo:
                    raise pickle.UnpicklingError(f"memo key {idx} not found")
                stack.append(memo[idx])
            # ---- globals, calls, state
            elif op == pickle.GLOBAL[0]:
                module = r.readline().decode("utf-8")
                name = r.readline().decode("utf-8")
                stack.append(self._find(module, name))
            elif op == pickle.STACK_GLOBAL[0]:
                name, module = pop(), pop()
                stack.append(self._find(module, name))
            elif op == pickle.REDUCE[0]:
                args, func = pop(), pop()
                stack.append(self._call(func, args))
            elif op == pickle.BUILD[0]:
                state = pop()
                inst = self._owned(top(), "BUILD (set state)")
                handler = self._build.get(type(inst))
                if handler is None:
                    raise self._refuse(
                        f"the pickle sets the state of a {type(inst).__name__}, which no weight file needs"
                    )
                with self._named():
                    handler(inst, state)
            elif op in (pickle.PERSID[0], pickle.BINPERSID[0]):
                pid = r.readline().decode("ascii") if op == pickle.PERSID[0] else pop()
                if self._persistent is None:
                    raise self._refuse("the pickle holds a persistent id, which this format never uses")
                stack.append(self._persistent(pid))
            else:
                raise pickle.UnpicklingError(f"unknown opcode {op_byte!r}")

    def _append(self, target: Any, items: list) -> None:
        target = self._owned(target, "APPEND")
        if type(target) is not list:
            raise self._refuse(f"APPEND on a {type(target).__name__}")
        target.extend(items)

    def _setitems(self, target: Any, items: list) -> None:
        target = self._owned(target, "SETITEM")
        if type(target) not in (dict, collections.OrderedDict):
            raise self._refuse(f"SETITEM on a {type(target).__name__}")
        if len(items) % 2:
            raise pickle.UnpicklingError("odd number of items for SETITEMS")
        for i in range(0, len(items), 2):
            target[plain_key(items[i], self._source)] = items[i + 1]


def discard_dict_state(inst: Any, state: Any) -> None:
    """BUILD on a dict this load made (torch's state_dict `_metadata`): checked to be a dict and not kept."""
    if isinstance(state, tuple) and len(state) == 2:
        state = state[0] if state[0] is not None else state[1]
    if not isinstance(state, dict):
        raise WeightFormatError("the state of a dict is not a dict")


def walk(
    obj: Any,
    source: str,
    visit: Callable[[Any], Any],
    max_depth: int = limits.MAX_NESTING,
    max_objects: int = limits.MAX_OBJECTS,
) -> Any:
    """Rebuilds dicts/lists/tuples (and object arrays' items) bottom-up with `visit` applied to every leaf.

    Refuses cycles, nesting deeper than `max_depth` and more than `max_objects` visits with WeightFormatError;
    a container reached twice is rebuilt once (so a pickle cannot blow up time or memory by sharing).
    """
    done: dict[int, Any] = {}
    active: set[int] = set()
    count = 0

    def go(o: Any, depth: int) -> Any:
        nonlocal count
        count += 1
        if count > max_objects:
            raise WeightFormatError(
                f"{source}: the checkpoint holds more than {max_objects} objects (emonet_tf.weights.limits.MAX_OBJECTS)"
            )
        container = isinstance(o, (dict, list, tuple)) or (isinstance(o, np.ndarray) and o.dtype == object)
        if not container:
            return visit(o)
        key = id(o)
        if key in done:
            return done[key][1]
        if key in active:
            raise WeightFormatError(f"{source}: the checkpoint contains a cycle (a container inside itself)")
        if depth >= max_depth:
            raise WeightFormatError(
                f"{source}: containers nested more than {max_depth} deep (emonet_tf.weights.limits.MAX_NESTING)"
            )
        active.add(key)
        if isinstance(o, dict):
            out: Any = type(o)() if type(o) is not dict else {}
            for k, v in o.items():
                out[k] = go(v, depth + 1)
        elif isinstance(o, np.ndarray):
            out = np.empty(o.shape, object)
            flat_in, flat_out = o.reshape(-1), out.reshape(-1)
            for i in range(flat_in.size):
                flat_out[i] = go(flat_in[i], depth + 1)
        else:
            out = type(o)(go(v, depth + 1) for v in o)
        active.discard(key)
        done[key] = (o, out)  # o kept alive so its id is not reused during the walk
        return out

    try:
        return go(obj, 0)
    finally:  # `go` refers to itself through its cell: break that cycle so that what `visit` holds (raw
        go = None  # storages) is freed now, not at the next garbage collection  # noqa: F841
