"""Run every program of an interpreted launch at once, one thread each, so grid-synchronising kernels
execute on the CPU.

Triton's interpreter runs a grid's programs one after another, each to completion, so a kernel
whose programs wait for one another (a grid barrier, ready flags) can only run there as a single
program. Inside :func:`concurrent_programs` each program of a launch runs in its own thread with its
own ``tl.program_id``; the launch returns when all have finished. The interpreter's atomics hold the
GIL, so they are atomic between threads, and a spinning program yields the GIL to the others.
Memory is sequentially consistent here, unlike a GPU's: this checks the protocol (which slot, which
step, who waits for whom, the timeout), not the fences, which only a GPU can check.

Waits are bounded by the host's clock under the interpreter (``kernels/barrier.py``). It works by
patching interpreter internals (the builder's program index, the launch's call of the kernel body,
and a lock around the two steps that touch a device function's module globals); ``test_concurrent_interpreter.py`` checks that the patch still takes on the
installed Triton.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import threading

from triton.runtime import interpreter

_local = threading.local()
# The first call of a device function copies the interpreter's names into its module's globals
# (FunctionRewriter._compile_and_exec) while another program's thread may be iterating the same
# globals (_patch_lang): "dictionary changed size during iteration". One lock serialises the two.
_rewriting = threading.RLock()


def _serialised(fn):
    @functools.wraps(fn)
    def call(*args, **kwargs):
        with _rewriting:
            return fn(*args, **kwargs)

    return call


def _get_grid_idx(builder):
    return getattr(_local, "grid_idx", None)


def _set_grid_idx(builder, value):
    _local.grid_idx = value


class _ConcurrentBody:
    """Stands in for a launch's kernel body: each call starts one program in a thread and the call
    for the grid's last program waits for all of them, re-raising the first error."""

    def __init__(self, fn):
        self.fn = fn
        # What the launch inspects of its kernel body: name, annotations, signature, globals.
        functools.update_wrapper(self, fn)
        self.__signature__ = inspect.signature(fn)
        self.__globals__ = fn.__globals__
        self.threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []

    def _program(self, grid_idx, kwargs):
        _local.grid_idx = grid_idx
        try:
            self.fn(**kwargs)
        except BaseException as error:  # noqa: BLE001 - handed to the launching thread
            self.errors.append(error)

    def __call__(self, **kwargs):
        grid_idx = _local.grid_idx
        thread = threading.Thread(target=self._program, args=(grid_idx, kwargs), daemon=True)
        thread.start()
        self.threads.append(thread)
        if grid_idx == tuple(n - 1 for n in interpreter.interpreter_builder.grid_dim):
            for thread in self.threads:
                thread.join()
            if self.errors:
                raise self.errors[0]


@contextlib.contextmanager
def concurrent_programs():
    """Within this context, interpreted launches run all their programs concurrently."""
    builder_type = type(interpreter.interpreter_builder)
    executor_init = interpreter.GridExecutor.__init__
    patch_lang, compile_and_exec = interpreter._patch_lang, interpreter.FunctionRewriter._compile_and_exec

    def init(self, fn, *args, **kwargs):
        executor_init(self, _ConcurrentBody(fn), *args, **kwargs)

    builder_type.grid_idx = property(_get_grid_idx, _set_grid_idx)
    interpreter.GridExecutor.__init__ = init
    interpreter._patch_lang = _serialised(patch_lang)
    interpreter.FunctionRewriter._compile_and_exec = _serialised(compile_and_exec)
    try:
        yield
    finally:
        interpreter.GridExecutor.__init__ = executor_init
        interpreter._patch_lang = patch_lang
        interpreter.FunctionRewriter._compile_and_exec = compile_and_exec
        del builder_type.grid_idx
