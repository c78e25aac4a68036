"""The serial implementation: the same work, in this process, when its result is wanted.

``InlineHelper`` runs a helper module's ``run(spec)`` here instead of in a second
process, at the moment the caller asks for its report or answer; every value crosses
JSON as it would between processes, so the pack writes the same bytes either way.
``DeferredExecutor`` is an executor whose work runs on the caller's thread when its
future's result is asked for (or never, if it is cancelled first).
"""

from __future__ import annotations

import importlib
import json
from concurrent.futures import Executor, Future


def _through_json(value):
    return json.loads(json.dumps(value))


class InlineHelper:
    """A helper's work run in this process (``Parallelism.helper`` in serial mode)."""

    def __init__(self, module: str, spec: dict):
        self._module, self._spec = module, _through_json(spec)
        self._work = None           # a reporting helper's generator, once started
        self._told = None
        self._done = False

    def report(self) -> dict | None:
        work = importlib.import_module(self._module).run(self._spec)
        if not hasattr(work, "send"):
            raise TypeError(f"{self._module}.run does not report")
        self._work = work
        return _through_json(next(work))

    def tell(self, message: dict) -> bool:
        self._told = _through_json(message)
        return True

    def answer(self) -> dict | None:
        self._done = True
        if self._work is None:
            result = importlib.import_module(self._module).run(self._spec)
        else:
            work, self._work = self._work, None
            try:
                work.send(self._told)
                raise RuntimeError("a helper reports once")
            except StopIteration as done:
                result = done.value
        result = _through_json(result)
        return result if isinstance(result, dict) else None

    def stop(self) -> None:
        if self._work is not None:      # reported and never told: it ends here
            self._work.close()
            self._work = None


class _Deferred(Future):
    """A future whose work runs when its result is first asked for."""

    def __init__(self, fn, args, kwargs):
        super().__init__()
        self._call = (fn, args, kwargs)

    def _run(self) -> None:
        call, self._call = self._call, None
        if call is None or not self.set_running_or_notify_cancel():
            return
        fn, args, kwargs = call
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self.set_exception(exc)
        else:
            self.set_result(result)

    def result(self, timeout=None):
        self._run()
        return super().result(timeout)

    def exception(self, timeout=None):
        self._run()
        return super().exception(timeout)


class DeferredExecutor(Executor):
    """``submit`` returns a future that runs its work on the caller's thread, when asked."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        return _Deferred(fn, args, kwargs)

    def shutdown(self, wait=True, *, cancel_futures=False) -> None:
        pass
